"""Errors, retries, the rate-limit gate, timeouts, cancellation and session ownership
(docs/oxlin-api §10-11), against the emulator over
real sockets.

Faults are drawn from one seeded `random.Random` per `set_faults` call, one draw per
request, so a test that sends requests one at a time meets a known sequence of faults.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from _helpers import (
    ACCOUNTS,
    FAST,
    ME,
    POST_USERS,
    TOKEN,
    TX,
    closed_port,
    eventually,
    new_client,
    requests,
    total_requests,
    truth_ids,
)

import oxlin_async as ox
from oxlin_async._options import RequestOptions, RequestStats
from oxlin_async._transport import as_nothing
from oxlin_async.resources import ClientUsers
from oxlin_async.testing import OxlinSandbox
from oxlin_async.testing._sandbox import SandboxUser

OFF = ox.RetryPolicy.disabled()


# ------------------------------------------------------------------------------- helpers


@pytest.fixture
async def strict(sandbox: OxlinSandbox) -> AsyncIterator[ox.OxlinClient]:
    """A client that never retries."""
    async with new_client(sandbox, retry=OFF) as c:
        yield c


def seed_for(rate: float, pattern: str) -> int:
    """A fault seed whose first draws fail ('x') or pass ('.') at this total rate."""
    for seed in range(10_000):
        rng = random.Random(seed)
        if all((rng.random() < rate) == (c == "x") for c in pattern):
            return seed
    raise AssertionError("no seed found")


def check_api_error(error: BaseException, cls: type[ox.APIError], status: int,
                    code: str | None, method: str, path: str) -> None:
    assert type(error) is cls, repr(error)
    assert isinstance(error, ox.APIError)
    assert error.status == status
    assert error.code == code
    assert error.description
    assert error.request_id  # the X-Request-ID of the answer
    assert error.method == method
    assert error.url is not None and error.url.endswith(path)
    message = str(error)
    assert f"{method} " in message and path in message and error.request_id in message
    assert str(status) in message


async def user_of(client: ox.OxlinClient, who: SandboxUser) -> ox.UserClient:
    """A user view that already holds its token (so faults hit the API call, not /token)."""
    user = client.as_user(who.email, who.password)
    await user.users.me()
    return user


# ------------------------------------------------------------- every error, from the wire
async def test_bad_request_error(sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    user = await user_of(client, sandbox.users[0])
    url = sandbox.environment.api_url / "transactions"
    with pytest.raises(ox.BadRequestError) as caught:
        await user.request(as_nothing, RequestOptions(method="GET", url=url,
                                                      params={"page": "1", "limit": "501"}))
    check_api_error(caught.value, ox.BadRequestError, 400, "BAD_PARAMETER", "GET",
                    "/api/v2.1/transactions")
    assert "limit=" not in str(caught.value)  # the URL in the message has no query

    # a body the server refuses, on the client token
    with pytest.raises(ox.BadRequestError) as body:
        await client._requester.request(as_nothing, RequestOptions(
            method="POST", url=sandbox.environment.api_url / "users",
            json={"email": "x.y@example.com", "password": "pw", "role": "admin"},
            idempotent=False))
    check_api_error(body.value, ox.BadRequestError, 400, "BAD_PARAMETER", "POST",
                    "/api/v2.1/users")
    assert requests(sandbox, POST_USERS) == 1


async def test_authentication_error(sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    url = sandbox.environment.api_url / "users" / "me"
    with pytest.raises(ox.AuthenticationError) as caught:
        await client.transport.request(as_nothing, RequestOptions(
            method="GET", url=url, headers={"Authorization": "Bearer nope"}))
    check_api_error(caught.value, ox.AuthenticationError, 401, "invalid_token", "GET",
                    "/api/v2.1/users/me")


async def test_permission_denied_error(sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice, bob = sandbox.users[0], sandbox.users[1]
    # the client token on a user endpoint
    with pytest.raises(ox.PermissionDeniedError) as client_token:
        await client._requester.request(as_nothing, RequestOptions(
            method="GET", url=sandbox.environment.api_url / "users" / "me"))
    check_api_error(client_token.value, ox.PermissionDeniedError, 403, "insufficient_scope",
                    "GET", "/api/v2.1/users/me")
    # another user's id
    user = await user_of(client, alice)
    with pytest.raises(ox.PermissionDeniedError) as other:
        await user.users.get(bob.id)
    check_api_error(other.value, ox.PermissionDeniedError, 403, "insufficient_scope", "GET",
                    f"/api/v2.1/users/{bob.id}")
    # a user token lacking the scope
    narrow = client.as_user(alice.email, alice.password, scopes=["openid"])
    with pytest.raises(ox.PermissionDeniedError) as scope:
        await narrow.users.me()
    check_api_error(scope.value, ox.PermissionDeniedError, 403, "insufficient_scope", "GET",
                    "/api/v2.1/users/me")


async def test_not_found_and_conflict_errors(sandbox: OxlinSandbox,
                                             client: ox.OxlinClient) -> None:
    user = await user_of(client, sandbox.users[0])
    with pytest.raises(ox.NotFoundError) as missing:
        await user.accounts.get("1")
    check_api_error(missing.value, ox.NotFoundError, 404, "RESOURCE_UNKNOWN", "GET",
                    "/api/v2.1/accounts/1")
    with pytest.raises(ox.ConflictError) as twice:
        await client.users.create(sandbox.users[1].email.upper(), "another-pw")
    check_api_error(twice.value, ox.ConflictError, 409, "CONFLICT", "POST", "/api/v2.1/users")
    assert requests(sandbox, POST_USERS) == 1


async def test_rate_limit_error_carries_retry_after(sandbox: OxlinSandbox,
                                                    strict: ox.OxlinClient) -> None:
    user = await user_of(strict, sandbox.users[0])
    sandbox.set_faults(rate_429=1.0, retry_after=1)
    with pytest.raises(ox.RateLimitError) as caught:
        await user.accounts.list().collect()
    check_api_error(caught.value, ox.RateLimitError, 429, "TOO_MANY_REQUESTS", "GET",
                    "/api/v2.1/accounts")
    assert caught.value.retry_after == 1.0
    assert "retry_after=1s" in str(caught.value)


@pytest.mark.parametrize(("status", "cls", "code"), [
    (500, ox.InternalServerError, "INTERNAL_ERROR"),
    (502, ox.ServerError, "BAD_GATEWAY"),
    (503, ox.ServiceUnavailableError, "SERVICE_UNAVAILABLE"),
])
async def test_server_errors(sandbox: OxlinSandbox, strict: ox.OxlinClient, status: int,
                             cls: type[ox.APIError], code: str) -> None:
    user = await user_of(strict, sandbox.users[0])
    sandbox.set_faults(**{f"rate_{status}": 1.0})
    with pytest.raises(ox.ServerError) as caught:
        await user.transactions.list().first()
    check_api_error(caught.value, cls, status, code, "GET", "/api/v2.1/transactions")
    if status == 503:
        assert caught.value.retry_after == 1.0  # type: ignore[attr-defined]
    assert requests(sandbox, TX) == 1  # retries disabled


async def test_oauth_errors_from_the_token_endpoint(sandbox: OxlinSandbox,
                                                    client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    with pytest.raises(ox.InvalidGrantError) as grant:
        await client.as_user(alice.email, "wrong-password").users.me()
    check_api_error(grant.value, ox.InvalidGrantError, 400, "invalid_grant", "POST",
                    "/auth/token")
    with pytest.raises(ox.OAuthError) as scope:
        await client.as_user(alice.email, alice.password, scopes=["no_such_scope"]).users.me()
    check_api_error(scope.value, ox.OAuthError, 400, "invalid_scope", "POST", "/auth/token")
    async with ox.OxlinClient(sandbox.client_id, "f" * 20, environment=sandbox.environment,
                              retry=FAST) as bad:
        with pytest.raises(ox.InvalidClientError) as invalid:
            await bad.categories.list()
    check_api_error(invalid.value, ox.InvalidClientError, 401, "invalid_client", "POST",
                    "/auth/token")
    assert requests(sandbox, TOKEN) == 3  # 4xx answers are not retried
    assert not sandbox.state.counters.grants


async def test_transport_error_on_a_closed_port() -> None:
    base = f"http://127.0.0.1:{closed_port()}"
    env = ox.Environment(auth_url=f"{base}/auth", api_url=f"{base}/api/v2.1",
                         embed_url=f"{base}/embed/v2.1")
    async with ox.OxlinClient("id", "secret", environment=env, retry=OFF) as client:
        with pytest.raises(ox.TransportError) as caught:
            await client.categories.list()
    error = caught.value
    assert type(error) is ox.TransportError
    assert error.method == "POST" and error.url == f"{base}/auth/token"
    assert "cannot connect" in str(error) and "POST" in str(error) and "/auth/token" in str(error)


async def test_transport_error_on_a_dropped_connection(sandbox: OxlinSandbox,
                                                       strict: ox.OxlinClient) -> None:
    user = await user_of(strict, sandbox.users[0])
    sandbox.set_faults(rate_drop=1.0)
    with pytest.raises(ox.TransportError) as caught:
        await user.accounts.list().collect()
    assert type(caught.value) is ox.TransportError
    assert caught.value.method == "GET"
    assert "GET" in str(caught.value) and "/api/v2.1/accounts" in str(caught.value)
    assert requests(sandbox, ACCOUNTS) == 1


async def test_decode_error_on_a_truncated_body(sandbox: OxlinSandbox,
                                                strict: ox.OxlinClient) -> None:
    user = await user_of(strict, sandbox.users[0])
    sandbox.set_faults(rate_truncate=1.0)
    with pytest.raises(ox.DecodeError) as caught:
        await user.accounts.list().collect()
    error = caught.value
    assert error.status == 200
    assert error.request_id
    assert "GET /api/v2.1/accounts" in str(error) and error.request_id in str(error)
    assert error.excerpt
    assert requests(sandbox, ACCOUNTS) == 1


async def test_bad_arguments_raise_before_any_request(sandbox: OxlinSandbox,
                                                      client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    naive = dt.datetime(2024, 1, 1, 12, 0)
    cases: list[tuple[str, Any]] = [
        ("page_size", lambda: user.transactions.list(page_size=501)),
        ("page_size", lambda: user.accounts.list(page_size=0)),
        ("sort", lambda: user.transactions.list(sort="label")),
        ("sort", lambda: user.transactions.list(sort=["-date", "date"])),
        ("start_date", lambda: user.transactions.list(start_date=naive)),
        ("account_type", lambda: user.transactions.list(account_type="PIGGY_BANK")),
        ("status", lambda: user.accounts.list(status="closed")),
        ("statuses", lambda: user.transactions.list(statuses=["BOGUS"])),
        ("account_id", lambda: user.accounts.get("12a")),
        ("email", lambda: client.users.create("not-an-email", "pw")),
        ("email", lambda: client.as_user("nobody", "pw")),
    ]
    for argument, call in cases:
        with pytest.raises(ox.ArgumentError) as caught:
            result = call()
            if asyncio.iscoroutine(result):
                await result
        assert caught.value.argument == argument
        assert argument in str(caught.value)
    assert total_requests(sandbox) == 0
    assert not sandbox.state.counters.grants


# ------------------------------------------------------------------------ retries at work
async def test_walks_under_heavy_faults_match_the_ground_truth(sandbox: OxlinSandbox) -> None:
    # 60 % of attempts fail; 40 retries make a request fail for good with p = 0.6**41.
    retry = ox.RetryPolicy(max_retries=40, initial_backoff=0.001, max_backoff=0.005)
    sandbox.set_faults(rate_500=0.2, rate_502=0.1, rate_503=0.1, rate_drop=0.1,
                       rate_truncate=0.1, retry_after=0, seed=2024)
    stats = RequestStats()
    async with new_client(sandbox, retry=retry) as client:

        async def walk(who: SandboxUser) -> list[str]:
            user = client.as_user(who.email, who.password).with_options(stats=stats)
            return [t.id async for t in user.transactions.list(page_size=25)]

        walks = await asyncio.gather(*(walk(u) for u in sandbox.users))
    for who, ids in zip(sandbox.users, walks, strict=True):
        assert len(ids) == len(set(ids)), who
        assert sorted(ids) == truth_ids(sandbox, who), who
    faults = sandbox.state.counters.faults
    assert stats.retries > 0
    assert stats.retries <= sum(faults.values())
    assert {"500", "502", "503", "drop", "truncate"} <= set(faults)
    assert stats.requests >= total_requests(sandbox) - 1


async def test_a_429_pauses_the_whole_client(sandbox: OxlinSandbox,
                                             client: ox.OxlinClient) -> None:
    user = await user_of(client, sandbox.users[0])
    other = await user_of(client, sandbox.users[1])
    sandbox.set_faults(rate_429=1.0, retry_after=1)
    first = asyncio.create_task(user.users.me())
    await eventually(lambda: sandbox.state.counters.faults["429"] > 0)
    seen_429 = time.monotonic()
    sandbox.set_faults(rate_429=0.0)
    await asyncio.sleep(0.05)  # the 429 reaches the client and closes the gate

    async def timed(coro: Any) -> float:
        await coro
        return time.monotonic()

    accounts_before = requests(sandbox, ACCOUNTS)
    others = [asyncio.create_task(timed(other.accounts.list().collect())) for _ in range(5)]
    others.append(asyncio.create_task(timed(client.categories.list())))
    await asyncio.sleep(0.5)
    assert requests(sandbox, ACCOUNTS) == accounts_before  # nothing sent while paused
    done = await asyncio.gather(*others)
    assert (await first).id == sandbox.users[0].id
    assert all(t >= seen_429 + 0.9 for t in done), [t - seen_429 for t in done]
    assert requests(sandbox, ME) == 2 + 2  # two warm-ups, the 429 and its retry


async def test_a_retry_after_above_the_cap_raises_at_once(sandbox: OxlinSandbox) -> None:
    retry = ox.RetryPolicy(max_retries=3, initial_backoff=0.001, max_backoff=0.005,
                           max_retry_after=0.5)
    async with new_client(sandbox, retry=retry) as client:
        user = await user_of(client, sandbox.users[0])
        sandbox.set_faults(rate_429=1.0, retry_after=5)
        with pytest.raises(ox.RateLimitError) as caught:
            await user.users.me()
        assert caught.value.retry_after == 5.0
        assert requests(sandbox, ME) == 2  # warm-up and the one 429: no waiting retry
        # and the gate stays open for the rest of the client
        assert client.transport._gate_until <= time.monotonic()
        sandbox.set_faults(rate_429=0.0)
        await user.users.me()
        assert requests(sandbox, ME) == 3


async def test_post_users_is_not_retried_once_it_may_have_reached_the_server(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    await client.categories.list()  # the client token, before the faults
    sandbox.set_faults(rate_500=1.0)
    with pytest.raises(ox.InternalServerError):
        await client.users.create("once@example.com", "pw-once-1")
    assert requests(sandbox, POST_USERS) == 1

    sandbox.set_faults(rate_500=0.0)
    async with new_client(sandbox, timeout=0.1) as hasty:
        await hasty.categories.list()
        sandbox.set_faults(latency=0.3)
        with pytest.raises(ox.RequestTimeoutError):
            await hasty.users.create("slow@example.com", "pw-slow-1")
    assert requests(sandbox, POST_USERS) == 2  # the timed-out one, not retried


async def test_a_created_user_whose_answer_is_lost_is_not_created_twice(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    await client.categories.list()
    sandbox.set_faults(rate_drop=1.0)  # the server creates the user, then hangs up
    with pytest.raises(ox.TransportError):
        await client.users.create("lost@example.com", "pw-lost-1")
    sandbox.set_faults(rate_drop=0.0)
    assert requests(sandbox, POST_USERS) == 1  # no replay that would answer 409
    assert sandbox.state.user_by_email("lost@example.com") is not None
    assert sandbox.state.counters.faults["drop"] == 1


async def test_post_users_is_retried_when_the_connection_was_refused() -> None:
    box = OxlinSandbox(users=0, seed=3)
    await box.start()
    retry = ox.RetryPolicy(max_retries=200, initial_backoff=0.002, max_backoff=0.005)
    stats = RequestStats()
    try:
        async with new_client(box, retry=retry) as client:
            await client.categories.list()  # the client token
            await box.close()  # nothing listens on the port now
            users = ClientUsers(client._requester.with_options(stats=stats))
            create = asyncio.create_task(users.create("late@example.com", "pw-late"))
            await eventually(lambda: stats.retries >= 2)
            assert not create.done()
            await box.start()  # same port, same state
            user_id = await asyncio.wait_for(create, 5)
    finally:
        await box.close()
    assert box.state.counters.requests[POST_USERS] == 1
    assert box.state.users[int(user_id)].email == "late@example.com"
    assert stats.retries >= 2


async def test_idempotent_delete_and_patch_are_retried(sandbox: OxlinSandbox,
                                                       client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = await user_of(client, alice)
    data = sandbox.state.data(int(alice.id))
    account_id = next(iter(data.accounts))
    connection_id = data.accounts[account_id].connection_id

    sandbox.set_faults(rate_500=0.5, seed=seed_for(0.5, "x."))
    archived = await user.accounts.archive(str(account_id))
    assert archived.status == ox.AccountStatus.CLOSED
    assert data.accounts[account_id].status == "CLOSED"
    assert requests(sandbox, "PATCH /api/v2.1/accounts/{account_id}") == 2

    # dropped after the server applied it: the replayed PATCH is harmless
    sandbox.set_faults(rate_500=0.0, rate_drop=0.5, seed=seed_for(0.5, "x."))
    assert (await user.accounts.unarchive(str(account_id))).status == ox.AccountStatus.ACTIVE
    assert requests(sandbox, "PATCH /api/v2.1/accounts/{account_id}") == 4

    sandbox.set_faults(rate_drop=0.0, rate_503=0.5, retry_after=0, seed=seed_for(0.5, "xx."))
    await user.connections.delete(str(connection_id))
    assert connection_id not in data.connections
    assert requests(sandbox, "DELETE /api/v2.1/connections/{connection_id}") == 3


# ----------------------------------------------------------------------- timeouts, cancel
async def test_a_slow_answer_raises_request_timeout_error(sandbox: OxlinSandbox) -> None:
    async with new_client(sandbox, timeout=0.05, retry=OFF) as client:
        user = await user_of(client, sandbox.users[0])
        sandbox.set_faults(latency=0.3)
        with pytest.raises(ox.RequestTimeoutError) as caught:  # it would succeed at 0.3 s
            await user.users.me()
    assert isinstance(caught.value, ox.TransportError)
    assert caught.value.method == "GET" and "/api/v2.1/users/me" in str(caught.value)
    await asyncio.sleep(0.3)  # let the emulator finish the abandoned request


async def test_cancelling_a_request_leaves_the_client_usable(sandbox: OxlinSandbox,
                                                             client: ox.OxlinClient) -> None:
    user = await user_of(client, sandbox.users[0])
    transport = client.transport
    sandbox.set_faults(latency=0.3)
    tasks = [asyncio.create_task(user.transactions.list(page_size=10).collect())
             for _ in range(5)]
    await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    assert transport._slots._value == transport.max_concurrency  # every slot given back
    sandbox.set_faults(latency=0.0)
    assert (await user.users.me()).id == sandbox.users[0].id
    assert len(await user.transactions.list().collect()) == 300


async def test_cancelling_a_waiter_does_not_cancel_the_shared_renewal(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    sandbox.set_faults(latency=0.2)
    impatient = asyncio.create_task(user.users.me())
    await asyncio.sleep(0.05)  # the password grant is on the wire
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    sandbox.set_faults(latency=0.0)
    assert (await user.users.me()).id == alice.id  # joins the same renewal
    assert sandbox.state.counters.grants == {"password": 1}
    assert requests(sandbox, TOKEN) == 1


async def test_closing_the_client_with_requests_in_flight_raises_cleanly(
        sandbox: OxlinSandbox) -> None:
    alice, bob = sandbox.users[0], sandbox.users[1]
    client = new_client(sandbox)
    warm = await user_of(client, alice)
    cold = client.as_user(bob.email, bob.password)  # will be waiting for its token
    sandbox.set_faults(latency=0.3)
    tasks = [asyncio.create_task(warm.users.me()) for _ in range(3)]
    tasks += [asyncio.create_task(cold.users.me()) for _ in range(3)]
    tasks.append(asyncio.create_task(warm.transactions.list(page_size=10).collect()))
    await asyncio.sleep(0.05)
    await client.close()
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 2)
    for task, result in zip(tasks, results, strict=True):
        assert not task.cancelled()  # nobody cancelled them: no CancelledError leaks out
        assert isinstance(result, (ox.OxlinError, RuntimeError)), repr(result)
    with pytest.raises(RuntimeError, match="closed"):
        await warm.users.me()
    sandbox.set_faults(latency=0.0)
    del client, warm, cold, tasks, results
    gc.collect()  # an unclosed aiohttp session would warn here (an error under pytest)


# --------------------------------------------------------------------- a borrowed session
async def test_a_borrowed_session_is_not_closed_and_bounds_concurrency(
        sandbox: OxlinSandbox) -> None:
    connector = aiohttp.TCPConnector(limit=5)
    async with aiohttp.ClientSession(connector=connector) as http:
        async with ox.OxlinClient(sandbox.client_id, sandbox.client_secret,
                                  environment=sandbox.environment, session=http,
                                  max_concurrency=64, retry=FAST) as client:
            assert client.transport.max_concurrency == 5
            user = client.as_user(sandbox.users[0].email, sandbox.users[0].password)
            found = await asyncio.gather(*(user.users.me() for _ in range(20)))
            assert {u.id for u in found} == {sandbox.users[0].id}
        assert not http.closed
        async with http.get(f"{sandbox.api_url}/categories") as resp:
            assert resp.status == 401  # still usable by its owner


async def test_concurrency_stays_within_the_borrowed_pool_per_host(
        sandbox: OxlinSandbox) -> None:
    # One connection per host: without the clamp, requests queue inside aiohttp's pool,
    # where the wait counts against the request timeout, and time out spuriously.
    connector = aiohttp.TCPConnector(limit=100, limit_per_host=1)
    async with aiohttp.ClientSession(connector=connector) as http, ox.OxlinClient(
            sandbox.client_id, sandbox.client_secret, environment=sandbox.environment,
            session=http, timeout=0.3, retry=OFF) as client:
        assert client.transport.max_concurrency == 1
        user = await user_of(client, sandbox.users[0])
        sandbox.set_faults(latency=0.1)
        found = await asyncio.gather(*(user.users.me() for _ in range(5)))
        assert len(found) == 5
