"""How a body is read: at once when its length is declared and nothing inflates it, and
within `max_body_size` however it comes (a compressed body is measured inflated)."""

from __future__ import annotations

import gzip

import orjson
import pytest
from _helpers import client_of
from aiohttp import web

import oxlin_async as ox

CATEGORY = {"id": "PETS", "label": "Animaux", "type": "EXPENSE"}


def _token() -> web.RouteDef:
    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "at", "token_type": "Bearer",
                                  "expires_in": 3600})
    return web.post("/auth/token", token)


async def test_a_declared_body_is_read_whole() -> None:
    body = orjson.dumps([CATEGORY] * 3000)

    async def categories(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async with client_of(
            [_token(), web.get("/v2.1/categories", categories)]) as client:
        got = await client.as_user_token("at").categories.list()
    assert len(body) > 2**16 and len(got) == 3000  # more than one read's worth
    assert got[0].id == "PETS" and got[-1].label == "Animaux"


@pytest.mark.parametrize("size", [2**19, 3 * 2**20])
async def test_a_compressed_body_counts_inflated(size: int) -> None:
    """A small declared length that inflates past the limit is still too large."""
    inflated = b"[" + b" " * size + b"]"
    deflated = gzip.compress(inflated)
    assert len(deflated) < 2**16

    async def categories(request: web.Request) -> web.Response:
        return web.Response(body=deflated, content_type="application/json",
                            headers={"Content-Encoding": "gzip"})

    async with client_of(
            [_token(), web.get("/v2.1/categories", categories)],
            max_body_size=2**20) as client:
        user = client.as_user_token("at")
        if size < 2**20:
            assert await user.categories.list() == []
        else:
            with pytest.raises(ox.ResponseTooLargeError) as caught:
                await user.categories.list()
            assert caught.value.limit == 2**20
