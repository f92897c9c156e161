"""What the retry policy does, seen from the emulator: how many attempts arrive, when they
arrive, with which headers, and what closing the client abandons.

Only the public API is used (`oxlin_async`, `OxlinSandbox`, its counters and faults), so
these tests hold whatever the request path looks like inside. Times are measured where
requests arrive (the emulator's request counter, timestamped) and are lower bounds only:
a loaded machine may make anything slower, never faster.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aiohttp
import pytest
from _helpers import SentHeaders, new_client

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox

CATEGORIES = "GET /api/v2.1/categories"
TOKEN = "POST /auth/token"
# Retry-After is in whole seconds; allow for clocks rounding, never for being early.
SLACK = 0.05


class Arrivals(Counter[str]):
    """The emulator's request counter, also noting when each request arrived."""

    def __init__(self, counts: Iterable[tuple[str, int]] = ()) -> None:
        super().__init__(dict(counts))
        self.log: list[tuple[str, float]] = []

    def __setitem__(self, route: str, count: int) -> None:
        if count > self.get(route, 0):
            self.log.append((route, time.monotonic()))
        super().__setitem__(route, count)

    def times(self, route: str) -> list[float]:
        return [at for name, at in self.log if name == route]


@pytest.fixture
async def box() -> AsyncIterator[OxlinSandbox]:
    async with OxlinSandbox(users=1, seed=15, accounts_per_user=1,
                            transactions_per_account=5) as sandbox:
        yield sandbox


@pytest.fixture
def arrivals(box: OxlinSandbox) -> Arrivals:
    counter = Arrivals(box.state.counters.requests.items())
    box.state.counters.requests = counter
    return counter


def api_faults(box: OxlinSandbox, **faults: Any) -> None:
    """Faults on the API only: token requests go through untouched."""
    box.set_faults(paths=("/api/",), **faults)


# --------------------------------------------------------------------- how many attempts
async def test_the_default_policy_makes_one_attempt_and_three_retries(
        box: OxlinSandbox, arrivals: Arrivals) -> None:
    assert ox.RetryPolicy().max_retries == 3
    async with new_client(box, retry=None) as client:  # the client's default policy
        await client.categories.list()
        api_faults(box, rate_503=1.0, retry_after=0)
        with pytest.raises(ox.ServerError) as raised:
            await client.categories.list()
    assert raised.value.status == 503
    assert arrivals[CATEGORIES] == 1 + (1 + 3)
    assert box.state.counters.faults["503"] == 1 + 3


@pytest.mark.parametrize("retries", [0, 1, 5])
async def test_max_retries_counts_the_retries_after_the_first_attempt(
        box: OxlinSandbox, arrivals: Arrivals, retries: int) -> None:
    policy = ox.RetryPolicy(max_retries=retries, initial_backoff=0.001, max_backoff=0.001)
    async with new_client(box, retry=policy) as client:
        await client.categories.list()
        api_faults(box, rate_500=1.0)
        with pytest.raises(ox.ServerError):
            await client.categories.list()
    assert arrivals[CATEGORIES] == 1 + (1 + retries)


def test_a_negative_max_retries_is_refused() -> None:
    with pytest.raises(ValueError, match="max_retries"):
        ox.RetryPolicy(max_retries=-1)
    assert ox.RetryPolicy(max_retries=0).max_retries == 0
    assert ox.RetryPolicy.disabled().max_retries == 0


async def test_a_504_is_retried(box: OxlinSandbox, arrivals: Arrivals) -> None:
    policy = ox.RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.001)
    async with new_client(box, retry=policy) as client:
        await client.categories.list()
        api_faults(box, rate_504=1.0)
        with pytest.raises(ox.ServerError) as raised:
            await client.categories.list()
        assert raised.value.status == 504
        assert arrivals[CATEGORIES] == 1 + 3
        assert box.state.counters.faults["504"] == 3

        api_faults(box, rate_504=0.0)
        assert await client.categories.list()  # and the gateway recovered: no error left


async def test_request_stats_count_each_attempt_once(
        box: OxlinSandbox, arrivals: Arrivals) -> None:
    policy = ox.RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.001)
    async with new_client(box, retry=policy) as client:
        who = box.users[0]
        stats = ox.RequestStats()
        user = client.as_user(who.email, who.password).with_options(stats=stats)
        await user.users.me()  # the password grant, then the request
        assert (stats.requests, stats.token_requests, stats.retries) == (2, 1, 0)
        assert arrivals[TOKEN] == 1 and arrivals["GET /api/v2.1/users/me"] == 1

        api_faults(box, rate_500=1.0)
        with pytest.raises(ox.ServerError):
            await user.users.me()
        assert (stats.requests, stats.token_requests, stats.retries) == (2 + 3, 1, 2)
        assert arrivals["GET /api/v2.1/users/me"] == 1 + 3


async def test_request_stats_count_each_token_request(
        box: OxlinSandbox, arrivals: Arrivals) -> None:
    async with new_client(box) as client:
        who = box.users[0]
        stats = ox.RequestStats()
        user = client.as_user(who.email, who.password).with_options(stats=stats)
        await user.users.me()
        # The emulator forgets the access token: the next call meets a 401, renews the
        # token (a second token request) and is replayed.
        box.state.tokens.clear()
        await user.users.me()
    assert arrivals[TOKEN] == 2 and arrivals["GET /api/v2.1/users/me"] == 3
    assert (stats.requests, stats.token_requests, stats.retries) == (5, 2, 0)


# --------------------------------------------------------------------------- how long
async def test_a_retry_waits_for_retry_after(box: OxlinSandbox, arrivals: Arrivals) -> None:
    async with new_client(box, retry=ox.RetryPolicy(max_retries=1)) as client:
        await client.categories.list()
        api_faults(box, rate_503=1.0, retry_after=1)
        with pytest.raises(ox.ServiceUnavailableError) as raised:
            await client.categories.list()
    assert raised.value.retry_after == 1
    first, second = arrivals.times(CATEGORIES)[1:]
    assert second - first >= 1 - SLACK


async def test_a_retry_after_at_the_cap_is_waited_for_and_above_it_raises_at_once(
        box: OxlinSandbox, arrivals: Arrivals) -> None:
    api_faults(box, rate_429=1.0, retry_after=1)
    at_cap = ox.RetryPolicy(max_retries=1, max_retry_after=1)
    async with new_client(box, retry=at_cap) as client:
        with pytest.raises(ox.RateLimitError):
            await client.categories.list()
    first, second = arrivals.times(CATEGORIES)
    assert second - first >= 1 - SLACK

    below = ox.RetryPolicy(max_retries=3, max_retry_after=0.999)
    async with new_client(box, retry=below) as client:
        with pytest.raises(ox.RateLimitError) as raised:
            await client.categories.list()
    assert raised.value.retry_after == 1
    assert arrivals[CATEGORIES] == 2 + 1  # no retry


async def first_arrival(arrivals: Arrivals, route: str, after: int) -> None:
    """Wait until the emulator has seen more than `after` requests to `route`."""
    while arrivals[route] <= after:  # noqa: ASYNC110 - the emulator runs in this loop
        await asyncio.sleep(0.005)


async def test_the_default_cap_on_retry_after_is_sixty_seconds(
        box: OxlinSandbox, arrivals: Arrivals) -> None:
    assert ox.RetryPolicy().max_retry_after == 60
    async with new_client(box, retry=None) as client:  # the client's default policy
        await client.categories.list()
        # Above the cap: the error comes at once, with no retry.
        api_faults(box, rate_429=1.0, retry_after=61)
        with pytest.raises(ox.RateLimitError) as raised:
            await client.categories.list()
        assert raised.value.retry_after == 61
        assert arrivals[CATEGORIES] == 1 + 1

        # At the cap: the client waits (it is still waiting a moment later; cancelled here).
        api_faults(box, rate_503=1.0, retry_after=60)
        waiting = asyncio.create_task(client.categories.list())
        await first_arrival(arrivals, CATEGORIES, 2)
        await asyncio.sleep(0.3)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    assert arrivals[CATEGORIES] == 1 + 1 + 1


def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    policy = ox.RetryPolicy(initial_backoff=0.5, max_backoff=6.0)
    rng = random.Random(15)
    for retry, ceiling in enumerate([0.5, 1.0, 2.0, 4.0, 6.0, 6.0, 6.0]):
        delays = [policy.backoff(retry, rng) for _ in range(400)]
        assert all(0 <= d <= ceiling for d in delays), retry
        # Full jitter: the whole range from 0 to the ceiling is used.
        assert min(delays) < 0.05 * ceiling, retry
        assert max(delays) > 0.95 * ceiling, retry
    # The same seed, the same delays.
    assert [policy.backoff(2, random.Random(3)) for _ in range(3)] == \
        [random.Random(3).uniform(0, 2.0)] * 3


# ------------------------------------------------------------------ the rate-limit gate
async def test_a_429_holds_back_a_request_already_queued_for_a_slot(
        box: OxlinSandbox, arrivals: Arrivals) -> None:
    # No retries, so each request meets one 429; a Retry-After at the cap closes the gate.
    policy = ox.RetryPolicy(max_retries=0, max_retry_after=1)
    async with new_client(box, max_concurrency=1, retry=policy) as client:
        await client.categories.list()
        # The 429 takes a moment to come back: meanwhile the second request passes the
        # (still open) gate and queues for the only slot.
        api_faults(box, rate_429=1.0, retry_after=1, latency=0.2)
        first = asyncio.create_task(client.categories.list())
        await first_arrival(arrivals, CATEGORIES, 1)
        second = asyncio.create_task(client.categories.list())
        results = await asyncio.gather(first, second, return_exceptions=True)
    assert all(isinstance(r, ox.RateLimitError) for r in results), results
    rate_limited_at, queued_sent_at = arrivals.times(CATEGORIES)[1:]
    # The queued request got its slot when the 429 came back, and still waited it out.
    assert queued_sent_at - rate_limited_at >= 0.2 + 1 - SLACK


# ----------------------------------------------------------------------------- headers
@pytest.mark.parametrize("user_agent", [None, "my-app/2.0"])
async def test_a_borrowed_session_sends_the_sdk_headers(
        box: OxlinSandbox, user_agent: str | None) -> None:
    seen = SentHeaders()
    async with aiohttp.ClientSession(trace_configs=[seen.config()]) as http:
        async with new_client(box, session=http, user_agent=user_agent) as client:
            await client.categories.list()
            user = box.users[0]
            await client.as_user(user.email, user.password).users.me()
        assert not http.closed  # borrowed: the caller closes it
    paths = [path for path, _ in seen.sent]
    assert paths == ["/auth/token", "/api/v2.1/categories", "/auth/token",
                     "/api/v2.1/users/me"]
    for path, headers in seen.sent:
        if user_agent is None:
            assert headers["User-Agent"].startswith("oxlin-async/"), path
            assert headers["User-Agent"] == f"oxlin-async/{ox.__version__}"
        else:
            assert headers["User-Agent"] == user_agent, path
        assert headers["Accept"] == "application/json", path


# ------------------------------------------------------------------------------ closing
async def test_close_abandons_a_token_renewal_in_flight(
        box: OxlinSandbox, arrivals: Arrivals) -> None:
    # A borrowed session stays open after the client closes: only cancelling the renewal
    # can end the request waiting on it.
    async with aiohttp.ClientSession() as http:
        client = new_client(box, session=http)
        box.set_faults(paths=("/auth/",), latency=0.5)  # the token endpoint is slow
        request = asyncio.create_task(client.categories.list())
        await first_arrival(arrivals, TOKEN, 0)
        await client.close()
        # The close has returned: the request waiting for the token has ended with it.
        await asyncio.sleep(0)
        assert request.done()
        assert not request.cancelled()  # the caller's task was not the one cancelled
        with pytest.raises(RuntimeError, match="closed"):
            request.result()
        assert arrivals[TOKEN] == 1
        assert arrivals[CATEGORIES] == 0
        # The emulator's handler of the abandoned request sleeps out its latency, then
        # finds the connection gone; let it, so that it does not outlive the test.
        await asyncio.sleep(0.6)
        assert arrivals[TOKEN] == 1 and arrivals[CATEGORIES] == 0
