"""Retry decisions: the pure functions of `oxlin_async._retry` without any server, then
what they mean on the wire (HTTP-date Retry-After, PATCH idempotency, a 2xx body decoded
inside the retry loop) against real sockets."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from _helpers import client_of
from aiohttp import web

import oxlin_async as ox
from oxlin_async._options import RequestOptions
from oxlin_async._retry import (
    Outcome,
    RetryPolicy,
    gate_delay,
    parse_retry_after,
    retry_delay,
)
from oxlin_async._transport import as_model
from oxlin_async.testing import OxlinSandbox

POLICY = RetryPolicy(max_retries=3, initial_backoff=0.5, max_backoff=8.0,
                     max_retry_after=60.0)
PATCH_ACCOUNT = "PATCH /api/v2.1/accounts/{account_id}"


def delay(outcome: Outcome, *, attempt: int = 0, idempotent: bool = True,
          policy: RetryPolicy = POLICY, seed: int = 1) -> float | None:
    return retry_delay(outcome, policy, attempt, idempotent, random.Random(seed))


# ------------------------------------------------------------------ pure: retry_delay
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 501])
def test_an_answer_asking_again_would_not_change_is_never_retried(status: int) -> None:
    assert delay(Outcome.answer(status)) is None
    assert delay(Outcome.answer(status, retry_after=1.0)) is None


@pytest.mark.parametrize("status", sorted(POLICY.statuses))
def test_retryable_statuses_back_off_with_full_jitter(status: int) -> None:
    for attempt in range(POLICY.max_retries):
        cap = min(POLICY.max_backoff, POLICY.initial_backoff * 2 ** attempt)
        waits = {delay(Outcome.answer(status), attempt=attempt, seed=s) for s in range(50)}
        assert all(w is not None and 0 <= w <= cap for w in waits), (attempt, waits)
        assert len(waits) > 40  # jittered, not one fixed value
    # the same draw as the policy's own backoff, from the same seeded generator
    assert delay(Outcome.answer(503), attempt=2, seed=9) == POLICY.backoff(2, random.Random(9))


def test_the_budget_of_retries_is_the_policys() -> None:
    failure = Outcome.answer(500)
    assert delay(failure, attempt=POLICY.max_retries - 1) is not None
    assert delay(failure, attempt=POLICY.max_retries) is None
    assert delay(failure, attempt=0, policy=RetryPolicy.disabled()) is None


def test_retry_after_is_waited_for_unless_above_the_cap() -> None:
    assert delay(Outcome.answer(429, retry_after=2.5)) == 2.5
    assert delay(Outcome.answer(503, retry_after=0.0)) == 0.0
    assert delay(Outcome.answer(429, retry_after=60.0)) == 60.0
    assert delay(Outcome.answer(429, retry_after=60.5)) is None  # raised at once


def test_a_request_that_may_have_had_its_effect_is_not_replayed_unless_idempotent() -> None:
    for outcome in (Outcome.answer(500), Outcome.answer(429, retry_after=1.0),
                    Outcome.no_answer(reached_server=True), Outcome.bad_body(200)):
        assert delay(outcome, idempotent=False) is None, outcome
        assert delay(outcome, idempotent=True) is not None, outcome
    # refused before it left: even a POST may go again
    refused = Outcome.no_answer(reached_server=False)
    assert delay(refused, idempotent=False) is not None
    assert delay(refused, idempotent=False, attempt=POLICY.max_retries) is None


def test_an_undecodable_2xx_is_a_failed_attempt() -> None:
    for status in (200, 201, 204):
        assert delay(Outcome.bad_body(status)) is not None
    assert delay(Outcome.bad_body(200), attempt=POLICY.max_retries) is None


def test_only_a_429_with_an_acceptable_retry_after_closes_the_gate() -> None:
    assert gate_delay(Outcome.answer(429, retry_after=3.0), POLICY) == 3.0
    assert gate_delay(Outcome.answer(429, retry_after=61.0), POLICY) is None
    assert gate_delay(Outcome.answer(429), POLICY) is None
    assert gate_delay(Outcome.answer(503, retry_after=3.0), POLICY) is None
    assert gate_delay(Outcome.no_answer(reached_server=True), POLICY) is None


# ------------------------------------------------------------- pure: parse_retry_after
NOW = 1_750_000_000.0


@pytest.mark.parametrize(("value", "expected"), [
    (None, None),
    ("3", 3.0),
    (" 2.5 ", 2.5),
    ("0", 0.0),
    ("-4", 0.0),
    ("soon", None),
    ("", None),
])
def test_retry_after_in_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_as_an_http_date() -> None:
    in_90s = email.utils.formatdate(NOW + 90, usegmt=True)  # "Sun, 15 Jun 2025 ... GMT"
    assert in_90s.endswith(" GMT")
    assert parse_retry_after(in_90s, NOW) == pytest.approx(90.0)
    # other spellings RFC 9110 accepts through email.utils: a numeric zone, "-0000"
    assert parse_retry_after(email.utils.formatdate(NOW + 30), NOW) == pytest.approx(30.0)
    assert parse_retry_after(
        email.utils.formatdate(NOW + 30).replace("+0000", "-0000"), NOW) == pytest.approx(30.0)
    # a date already past means "now", never a negative wait
    assert parse_retry_after(email.utils.formatdate(NOW - 600, usegmt=True), NOW) == 0.0
    assert parse_retry_after("Sun, 99 Foo 2025 25:61:00 GMT", NOW) is None


def test_a_minus_0000_date_is_utc_whatever_the_local_zone(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # "-0000" parses to a naive datetime; read as local time it would be off by the offset.
    minus_0000 = email.utils.formatdate(NOW + 30).replace("+0000", "-0000")
    monkeypatch.setenv("TZ", "UTC+5")  # POSIX: five hours west of UTC, no zone database
    time.tzset()
    try:
        assert parse_retry_after(minus_0000, NOW) == pytest.approx(30.0)
    finally:
        monkeypatch.undo()
        time.tzset()


# ------------------------------------------------------------ RequestOptions defaults
@pytest.mark.parametrize(("method", "idempotent"), [
    ("GET", True), ("HEAD", True), ("PUT", True), ("DELETE", True), ("OPTIONS", True),
    ("POST", False), ("PATCH", False),
])
def test_idempotency_defaults_by_method(method: str, idempotent: bool) -> None:
    url = ox.Environment.SANDBOX.api_url / "accounts" / "1"
    assert RequestOptions(method=method, url=url).idempotent is idempotent
    assert RequestOptions(method=method, url=url, idempotent=not idempotent).idempotent \
        is not idempotent


# ------------------------------------------------------------------ on the wire: PATCH
async def test_archive_is_retried_but_a_plain_patch_is_not(sandbox: OxlinSandbox,
                                                            client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    await user.users.me()  # the token first, so that the faults hit the PATCH
    data = sandbox.state.data(int(alice.id))
    account_id = str(next(iter(data.accounts)))
    url = sandbox.environment.api_url / "accounts" / account_id

    sandbox.set_faults(rate_500=1.0)
    with pytest.raises(ox.InternalServerError):
        await user.request(as_model(ox.Account), RequestOptions(
            method="PATCH", url=url, json={"status": "CLOSED"}))
    assert sandbox.state.counters.requests[PATCH_ACCOUNT] == 1  # not replayed

    with pytest.raises(ox.InternalServerError):
        await user.accounts.archive(account_id)  # says it is idempotent: retried
    assert sandbox.state.counters.requests[PATCH_ACCOUNT] == 2 + client.transport.retry.max_retries

    sandbox.set_faults(rate_500=0.0)
    assert (await user.accounts.archive(account_id)).status == ox.AccountStatus.CLOSED
    assert (await user.accounts.unarchive(account_id)).status == ox.AccountStatus.ACTIVE


# ------------------------------------------------------------------ on the wire: crafted
@pytest.fixture
async def crafted() -> AsyncIterator[tuple[ox.OxlinClient, list[float], dict[str, Any]]]:
    """A server of our own: a token endpoint, and PATCH /accounts/1 answering what the
    test scripts in `script` (one callable per request), timestamps in `seen`."""
    seen: list[float] = []
    script: dict[str, Any] = {"answers": []}

    async def token(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "at", "token_type": "Bearer",
                                  "expires_in": 3600, "refresh_token": "rt"})

    async def patch(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        answers: list[Callable[[], web.Response]] = script["answers"]
        return answers.pop(0)()

    retry = ox.RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.002)
    routes = [web.post("/auth/token", token), web.patch("/v2.1/accounts/1", patch)]
    async with client_of(routes, retry=retry) as c:
        yield c, seen, script


ACCOUNT = {"id": "1", "connection_id": "2", "name": "Main", "type": "CHECKINGS",
           "status": "CLOSED", "currency": "EUR", "balance": 12.5,
           "balance_date": 1700000000, "creation_date": 1600000000}


async def test_a_wrong_shaped_2xx_is_retried_like_a_truncated_one(
        crafted: tuple[ox.OxlinClient, list[float], dict[str, Any]]) -> None:
    client, seen, script = crafted
    user = client.as_user("jane@example.com", "pw")
    script["answers"] = [lambda: web.json_response({"id": "1"}),  # no name, type...
                         lambda: web.Response(text='{"id": "1", "na',
                                              content_type="application/json"),
                         lambda: web.json_response(ACCOUNT)]
    account = await user.accounts.archive("1")
    assert account.status == ox.AccountStatus.CLOSED and len(seen) == 3

    # the retries run out on wrong shapes: the DecodeError names the answer
    script["answers"] = [lambda: web.json_response({"id": "1"})] * 3
    with pytest.raises(ox.DecodeError) as caught:
        await user.accounts.archive("1")
    assert caught.value.status == 200 and len(seen) == 6


async def test_a_retry_after_http_date_is_honoured(
        crafted: tuple[ox.OxlinClient, list[float], dict[str, Any]]) -> None:
    client, seen, script = crafted
    user = client.as_user("jane@example.com", "pw")

    def busy() -> web.Response:
        # HTTP dates have whole seconds: 2 s from now is between 1 and 2 s away
        when = email.utils.formatdate(time.time() + 2, usegmt=True)
        return web.json_response({"error": "TOO_MANY_REQUESTS"}, status=429,
                                 headers={"Retry-After": when})

    script["answers"] = [busy, lambda: web.json_response(ACCOUNT)]
    assert (await user.accounts.archive("1")).id == "1"
    assert len(seen) == 2 and seen[1] - seen[0] >= 0.9

    # and on the error when it is not retried, in seconds
    script["answers"] = [busy]
    with pytest.raises(ox.RateLimitError) as caught:
        await user.request(as_model(ox.Account), RequestOptions(
            method="PATCH", url=client.environment.api_url / "accounts" / "1",
            json={"status": "CLOSED"}))
    assert caught.value.retry_after is not None and 0.9 <= caught.value.retry_after <= 2.0
