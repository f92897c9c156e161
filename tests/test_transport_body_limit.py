"""`max_body_size` at its edge: a body of exactly the limit is read, one byte more is a
`ResponseTooLargeError` naming the answer, and a body declared too large is refused
before any of it is awaited. A tiny server of the test's own serves the bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from _helpers import client_of
from _payloads import CATEGORY
from aiohttp import web

import oxlin_async as ox

TOKEN = {"access_token": "at", "token_type": "Bearer", "expires_in": 3600}
LIMIT = 4096
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def categories(n_bytes: int) -> bytes:
    """A JSON array of categories padded with spaces to exactly `n_bytes`."""
    body = json.dumps([CATEGORY]).encode()
    assert len(body) <= n_bytes
    return body[:-1] + b" " * (n_bytes - len(body)) + b"]"


def server(api: Handler, counts: dict[str, int]) -> list[web.RouteDef]:
    async def token(request: web.Request) -> web.Response:
        return web.json_response(TOKEN)

    async def counted(request: web.Request) -> web.StreamResponse:
        counts["api"] = counts.get("api", 0) + 1
        return await api(request)

    return [web.post("/auth/token", token), web.get("/v2.1/{tail:.*}", counted)]


async def streamed(request: web.Request, body: bytes) -> web.StreamResponse:
    """`body` in chunks of one byte to a few, with no Content-Length."""
    response = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "X-Request-ID": "req-big"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    try:
        for start in range(0, len(body), 1000):
            await response.write(body[start:start + 1000])
        await response.write_eof()
    except (ConnectionError, RuntimeError):
        pass  # the client hung up once it had seen enough
    return response


async def get_categories(api: Handler, **kwargs: Any) -> tuple[Any, int]:
    """The categories list from a server answering with `api`, or the error it ended in;
    and how many API requests the server saw."""
    counts: dict[str, int] = {}
    async with client_of(server(api, counts), max_body_size=LIMIT,
                         retry=ox.RetryPolicy(max_retries=2, initial_backoff=0.001,
                                              max_backoff=0.001), **kwargs) as client:
        alice = client.as_user("alice@example.com", "pw")
        try:
            result: Any = await asyncio.wait_for(alice.categories.list(), 60)
        except ox.OxlinError as error:
            result = error
    return result, counts.get("api", 0)


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_a_body_of_exactly_the_limit_is_read(declared: bool) -> None:
    body = categories(LIMIT)

    async def api(request: web.Request) -> web.StreamResponse:
        if declared:
            return web.Response(body=body, content_type="application/json")
        return await streamed(request, body)

    result, sent = await get_categories(api)
    assert isinstance(result, list) and len(result) == 1, result
    assert sent == 1


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "streamed"])
async def test_one_byte_above_the_limit_is_too_large_and_names_the_answer(
        declared: bool) -> None:
    body = categories(LIMIT + 1)

    async def api(request: web.Request) -> web.StreamResponse:
        if declared:
            return web.Response(body=body, content_type="application/json",
                                headers={"X-Request-ID": "req-big"})
        return await streamed(request, body)

    error, sent = await get_categories(api)
    assert isinstance(error, ox.ResponseTooLargeError), error
    assert error.limit == LIMIT
    assert str(error) == ("GET /v2.1/categories: the response body is larger than "
                          f"max_body_size ({LIMIT} bytes) (status 200, request_id=req-big)")
    assert (error.status, error.request_id) == (200, "req-big")
    assert sent == 1  # the same answer would come again: not retried


async def test_a_body_declared_too_large_is_refused_without_waiting_for_it() -> None:
    # The server declares one byte above the limit, sends a first byte, and holds the
    # rest back until the client hangs up: only a client that trusts the declared length
    # ends before its timeout.
    async def api(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json",
                                               "X-Request-ID": "req-held"})
        response.content_length = LIMIT + 1
        await response.prepare(request)
        try:
            await response.write(b"[")
            transport = request.transport
            # Nothing signals a peer hanging up: poll for it.
            while transport is not None and not transport.is_closing():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        except (ConnectionError, RuntimeError):
            pass
        return response

    error, sent = await get_categories(api, timeout=5.0)
    assert isinstance(error, ox.ResponseTooLargeError), error
    assert (error.status, error.request_id, error.limit) == (200, "req-held", LIMIT)
    assert sent == 1
