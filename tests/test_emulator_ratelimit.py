"""The emulator's rate limit: a token bucket per client id (`RateLimit`), 429 with a
Retry-After computed from the bucket, and the verdicts in the ground-truth counters."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from _helpers import FakeClock, total_requests

from oxlin_async.testing import OxlinSandbox, RateLimit
from oxlin_async.testing._cli import build_parser, describe, sandbox_from_args
from oxlin_async.testing._ratelimit import Buckets


# --------------------------------------------------------------------------- the bucket
def test_a_bucket_admits_its_burst_then_refuses_with_the_wait_for_a_token() -> None:
    clock = FakeClock(100.0)
    buckets = Buckets(RateLimit(0.25, burst=3), clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    # empty: a token comes in 4 s, and a refusal takes nothing from the bucket
    assert buckets.take("a") == 4
    assert buckets.take("a") == 4
    clock.now += 1.0  # a quarter of a token: 3 s to go
    assert buckets.take("a") == 3
    clock.now += 2.5  # 0.875 of a token: 0.5 s to go, said in whole seconds
    assert buckets.take("a") == 1
    clock.now += 0.5
    assert buckets.take("a") is None
    assert buckets.take("a") == 4


def test_each_client_id_has_its_own_bucket_and_a_bucket_holds_at_most_its_burst() -> None:
    clock = FakeClock()
    buckets = Buckets(RateLimit(10, burst=2), clock=clock)
    assert [buckets.take("a") for _ in range(3)] == [None, None, 1]
    assert [buckets.take("b") for _ in range(2)] == [None, None]  # b is not a's
    clock.now += 3600  # an hour idle fills the bucket to its burst, not beyond
    assert [buckets.take("a") for _ in range(3)] == [None, None, 1]
    # a fast rate refills fast: 0.15 s is one token and a half
    clock.now += 0.15
    assert buckets.take("a") is None
    assert buckets.take("a") == 1


def test_the_default_burst_is_one_second_of_the_rate_and_bad_limits_are_refused() -> None:
    assert RateLimit(200).burst == 200
    assert RateLimit(0.5).burst == 1
    assert RateLimit.parse("200") == RateLimit(200, 200)
    assert RateLimit.parse("200,50") == RateLimit(200, 50)
    assert RateLimit.parse(" 7.5 , 3 ") == RateLimit(7.5, 3)
    for bad in ("0", "-3", "fast", "nan", "inf", "200,0", "200,2.5", "200,x"):
        with pytest.raises(ValueError, match="RPS"):
            RateLimit.parse(bad)
    for rate, burst in ((0, 1), (float("nan"), 1), (5, 0), (5, True)):
        with pytest.raises(ValueError):
            RateLimit(rate, burst)


# ------------------------------------------------------------------------ over HTTP
@pytest.fixture
async def limited() -> AsyncIterator[tuple[OxlinSandbox, FakeClock]]:
    clock = FakeClock()
    async with OxlinSandbox(users=2, seed=3, transactions_per_account=5,
                            rate_limit=RateLimit(1, burst=3)) as box:
        box.buckets.clock = clock
        yield box, clock


def _basic(box: OxlinSandbox, secret: str | None = None) -> dict[str, str]:
    raw = f"{box.client_id}:{secret or box.client_secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def _token(http: aiohttp.ClientSession, box: OxlinSandbox) -> tuple[int, str]:
    user = box.users[0]
    async with http.post(f"{box.auth_url}/token", headers=_basic(box), data={
            "grant_type": "password", "username": user.email,
            "password": user.password}) as resp:
        return resp.status, (await resp.json()).get("access_token", "")


async def test_the_sandbox_answers_429_with_retry_after_beyond_the_limit(
        limited: tuple[OxlinSandbox, FakeClock]) -> None:
    box, clock = limited
    async with aiohttp.ClientSession() as http:
        status, token = await _token(http, box)  # the token request counts too
        assert status == 200
        bearer = {"Authorization": f"Bearer {token}"}
        statuses = []
        for _ in range(3):
            async with http.get(f"{box.api_url}/accounts", headers=bearer) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    refused = (dict(resp.headers), json.loads(await resp.read()))
        assert statuses == [200, 200, 429]
        headers, body = refused
        assert headers["Retry-After"] == "1"
        assert body == {"error": "TOO_MANY_REQUESTS",
                        "error_description": "Rate limit exceeded, retry later"}
        assert headers["X-Request-ID"]
        counters = box.state.counters
        assert (counters.admitted, counters.refused) == (3, 1)
        assert total_requests(box) == 4  # a refused request was received all the same
        # the token request is metered too: it names its client by Basic credentials
        assert (await _token(http, box))[0] == 429
        clock.now += 1.0
        async with http.get(f"{box.api_url}/accounts", headers=bearer) as resp:
            assert resp.status == 200
        assert (counters.admitted, counters.refused) == (4, 2)
        counters.reset()
        assert (counters.admitted, counters.refused) == (0, 0)


async def test_the_widget_pages_are_not_metered_and_the_limit_changes_while_serving(
        limited: tuple[OxlinSandbox, FakeClock]) -> None:
    box, _ = limited
    async with aiohttp.ClientSession() as http:
        for _ in range(5):  # the widget's browser pages: no client id, no limit
            async with http.get(f"{box.embed_origin}/widget/add_connection") as resp:
                assert resp.status != 429
        assert box.state.counters.refused == 0
        box.rate_limit = 1000  # a number is requests per second; the buckets start full
        assert box.rate_limit == RateLimit(1000, 1000)
        for _ in range(20):
            assert (await _token(http, box))[0] == 200
        box.rate_limit = None
        for _ in range(5):
            assert (await _token(http, box))[0] == 200
        assert box.state.counters.admitted == 20  # without a limit nothing is metered


async def test_requests_naming_no_client_share_one_bucket() -> None:
    async with OxlinSandbox(users=1, seed=3, rate_limit=RateLimit(1, burst=2)) as box, \
            aiohttp.ClientSession() as http:
        box.buckets.clock = FakeClock()
        got = []
        for _ in range(3):
            async with http.get(f"{box.api_url}/accounts",
                                headers={"Authorization": "Bearer unknown"}) as resp:
                got.append(resp.status)
        assert got == [401, 401, 429]
        status, _ = await _token(http, box)  # its own client's bucket is still full
        assert status == 200


# --------------------------------------------------------------------- command line
def test_the_command_line_takes_a_rate_limit_and_says_so() -> None:
    args = build_parser().parse_args(["--rate-limit", "200,50", "--users", "1"])
    box = sandbox_from_args(args)
    assert box.rate_limit == RateLimit(200, 50)
    box._base = "http://127.0.0.1:1"  # describe() without serving
    assert "# rate limit: 200 requests/s per client id, burst 50" in describe(box)
    plain = sandbox_from_args(build_parser().parse_args(["--users", "1"]))
    assert plain.rate_limit is None
    with pytest.raises(ValueError, match="--rate-limit 0"):
        sandbox_from_args(build_parser().parse_args(["--rate-limit", "0"]))
