"""Shared fixtures: a running emulator, a client pointed at it (real sockets), a plain HTTP
driver of the emulator, and the four ways a payload is decoded."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from _api import Api
from _payloads import PARSERS, Decoder
from _postgres import pg_database, pg_server  # noqa: F401 - fixtures of every test module

import oxlin_async as ox
from oxlin_async._convert import structure, structure_list
from oxlin_async.testing import OxlinSandbox


@pytest.fixture
async def sandbox() -> AsyncIterator[OxlinSandbox]:
    """Three seeded users (100 transactions per account) and Harry Potter's test bank."""
    async with OxlinSandbox(users=3, seed=7, testbanks=["fr/harry_potter"]) as box:
        yield box


@pytest.fixture
async def client(sandbox: OxlinSandbox) -> AsyncIterator[ox.OxlinClient]:
    # Small backoffs keep fault tests fast; the policy itself is what is under test.
    retry = ox.RetryPolicy(initial_backoff=0.01, max_backoff=0.05)
    async with ox.OxlinClient(sandbox.client_id, sandbox.client_secret,
                              environment=sandbox.environment, retry=retry) as c:
        yield c


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Every test must leave no task of its own running."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before if not t.done()
              and t is not asyncio.current_task()]
    assert not leaked, f"tasks left running: {leaked}"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> Api:
    return Api(http, sandbox)


@pytest.fixture(params=["orjson/one", "orjson/page", "stdlib/one", "stdlib/page"])
def decode(request: pytest.FixtureRequest) -> Decoder:
    """Serialise a payload, parse it with one JSON library, decode it one way."""
    parser, way = request.param.split("/")

    def run(payload: Any, cls: type[Any]) -> Any:
        data = PARSERS[parser](json.dumps(payload).encode())
        if way == "one":
            return structure(data, cls)
        (obj,) = structure_list([data], cls)
        return obj

    return run
