"""Tokens and credentials as statements of behaviour: what a token answer yields, where
credentials go on the wire, when a cached token is renewed or still sent, and what closing
does to a renewal in flight.

`TokenManager` is driven with a `FakeClock` and a renew function of the test's own (the
manager's contract: one renewal at a time, given the token it replaces); the rest goes
through the public client, against the emulator or a tiny server of the test's own.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections import Counter

import aiohttp
import pytest
from _helpers import ME, TOKEN, FakeClock, SentHeaders, client_of, new_client, requests
from aiohttp import web

import oxlin_async as ox
from oxlin_async._auth import ClientBasicAuth, ClientCredentials, Token, TokenManager
from oxlin_async._options import RequestOptions
from oxlin_async.testing import OxlinSandbox


class Renewals:
    """A renew function that hands out t1, t2, ... (lifetime 100 s on `clock`) and notes
    what it was given."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.given: list[tuple[Token | None, RequestOptions | None]] = []

    async def __call__(self, previous: Token | None, call: RequestOptions | None) -> Token:
        self.given.append((previous, call))
        await asyncio.sleep(0)  # a renewal is a request: others queue behind it meanwhile
        return Token(access_token=f"t{len(self.given)}", expires_at=self.clock() + 100,
                     lifetime=100)


# ------------------------------------------------------------------ when the manager renews
async def test_a_fresh_token_given_at_construction_is_used_without_renewal() -> None:
    clock = FakeClock()
    renew = Renewals(clock)
    given = Token(access_token="given", expires_at=clock() + 100, lifetime=100)
    manager = TokenManager(renew, token=given, clock=clock)
    assert manager.token is given
    assert await manager.get() is given
    assert manager.is_current(given)
    assert renew.given == []


async def test_renewal_starts_exactly_at_refresh_at_and_is_given_the_old_token() -> None:
    clock = FakeClock()
    renew = Renewals(clock)
    manager = TokenManager(renew, clock=clock)
    call = RequestOptions(method="GET", url=ox.Environment.SANDBOX.token_url)
    first = await manager.get(call)
    assert renew.given == [(None, call)]
    assert first.refresh_at == clock() + 90  # 10 % of 100 s before expiry

    clock.now = first.refresh_at - 0.001
    assert await manager.get() is first
    clock.now = first.refresh_at
    second = await manager.get(call)
    assert second is not first and second.access_token == "t2"
    assert renew.given[1] == (first, call)
    assert manager.token is second


async def test_a_token_past_refresh_at_is_still_current_until_it_expires() -> None:
    # The margin is for renewing early, not for refusing to send a token still valid.
    clock = FakeClock()
    manager = TokenManager(Renewals(clock), clock=clock)
    token = await manager.get()
    clock.now = token.refresh_at + 1
    assert manager.is_current(token)
    clock.now = token.expires_at - 0.001
    assert manager.is_current(token)
    clock.now = token.expires_at
    assert not manager.is_current(token)


async def test_only_the_cached_token_unrefused_is_current() -> None:
    clock = FakeClock()
    manager = TokenManager(Renewals(clock), clock=clock)
    first = await manager.get()
    assert manager.is_current(first)
    assert not manager.is_current(Token(access_token="t1", expires_at=first.expires_at))
    manager.invalidate(first)
    assert not manager.is_current(first)
    second = await manager.get()
    assert manager.is_current(second) and not manager.is_current(first)


async def test_concurrent_callers_at_expiry_share_one_renewal() -> None:
    clock = FakeClock()
    renew = Renewals(clock)
    manager = TokenManager(renew, clock=clock)
    tokens = await asyncio.gather(*(manager.get() for _ in range(10)))
    assert {t.access_token for t in tokens} == {"t1"} and len(renew.given) == 1
    clock.now += 100
    tokens = await asyncio.gather(*(manager.get() for _ in range(10)))
    assert {t.access_token for t in tokens} == {"t2"} and len(renew.given) == 2


async def test_a_token_that_arrives_expired_is_renewed_again() -> None:
    # A token whose expiry is the very moment it arrives is already expired: not cached.
    clock = FakeClock()
    lifetimes = iter([0, 100])
    given: list[Token | None] = []

    async def renew(previous: Token | None, call: RequestOptions | None) -> Token:
        given.append(previous)
        lifetime = next(lifetimes)
        return Token(access_token=f"t{len(given)}", expires_at=clock() + lifetime,
                     lifetime=lifetime)

    manager = TokenManager(renew, clock=clock)
    token = await manager.get()
    assert token.access_token == "t2" and manager.token is token
    assert given == [None, None]


async def test_on_token_is_given_every_token_a_renewal_obtains() -> None:
    # Even one that arrived expired: its refresh token was rotated by the server.
    clock = FakeClock()
    lifetimes = iter([0, 100, 100])
    kept: list[str] = []

    async def renew(previous: Token | None, call: RequestOptions | None) -> Token:
        lifetime = next(lifetimes)
        return Token(access_token=f"t{len(kept) + 1}", expires_at=clock() + lifetime,
                     lifetime=lifetime, refresh_token=f"r{len(kept) + 1}")

    def keep(token: Token) -> None:
        kept.append(str(token.refresh_token))

    manager = TokenManager(renew, clock=clock, on_token=keep)
    assert manager.on_token is keep
    await manager.get()
    assert kept == ["r1", "r2"]
    clock.now += 100
    await manager.get()
    assert kept == ["r1", "r2", "r3"]


# ------------------------------------------------------------------------------- closing
async def test_closing_during_a_renewal_tells_its_waiters_the_client_is_closed() -> None:
    started, ended = asyncio.Event(), []

    async def renew(previous: Token | None, call: RequestOptions | None) -> Token:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            ended.append("renewal")
        raise AssertionError("unreachable")

    manager = TokenManager(renew)
    waiter = asyncio.create_task(manager.get())
    await started.wait()
    await manager.aclose()
    assert ended == ["renewal"]
    with pytest.raises(RuntimeError, match=r"^this client is closed$"):
        await waiter
    assert not waiter.cancelled()


async def test_a_waiter_cancelled_while_the_client_closes_ends_cancelled() -> None:
    # The caller's own cancellation wins over "closed": whoever cancelled it expects a
    # CancelledError out of it.
    started = asyncio.Event()
    waiter: asyncio.Task[Token] | None = None

    async def renew(previous: Token | None, call: RequestOptions | None) -> Token:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            assert waiter is not None
            waiter.cancel()  # the caller is cancelled at the same moment the client closes
            raise
        raise AssertionError("unreachable")

    manager = TokenManager(renew)
    waiter = asyncio.create_task(manager.get())
    await started.wait()
    await manager.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert waiter.cancelled()


async def test_a_waiter_cancelled_just_after_close_ended_its_renewal_ends_cancelled() -> None:
    # The waiter's own cancellation lands once the abandoned renewal has ended, before the
    # waiter resumes: it must still end cancelled, not with "closed".
    started = asyncio.Event()

    async def renew(previous: Token | None, call: RequestOptions | None) -> Token:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    manager = TokenManager(renew)
    before = asyncio.all_tasks()
    waiter = asyncio.create_task(manager.get())
    await started.wait()
    renewal = asyncio.all_tasks() - before - {waiter}
    assert renewal  # the renewal runs in a task of its own
    loop = asyncio.get_running_loop()

    def cancel_the_waiter_once_the_renewal_ended() -> None:
        if all(task.done() for task in renewal):
            waiter.cancel()
        else:
            loop.call_soon(cancel_the_waiter_once_the_renewal_ended)

    loop.call_soon(cancel_the_waiter_once_the_renewal_ended)
    await manager.aclose()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert waiter.cancelled()


async def test_a_renewal_cancelled_on_an_open_manager_is_not_called_closed() -> None:
    async def renew(previous: Token | None, call: RequestOptions | None) -> Token:
        raise asyncio.CancelledError

    manager = TokenManager(renew)
    with pytest.raises(asyncio.CancelledError):
        await manager.get()


# ------------------------------------------------------------------ what a token answer is
async def test_a_user_token_answer_yields_its_scope_refresh_token_and_lifetime(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password, scopes=["profile", "accounts_read"])
    before = time.monotonic()
    await user.users.me()
    after = time.monotonic()
    token = user.tokens.token
    assert token is not None
    issued = sandbox.state.tokens[token.access_token]
    assert set(token.scope.split()) == set(issued.scopes) == {"profile", "accounts_read"}
    assert token.refresh_token in sandbox.state.refresh_tokens
    assert token.lifetime == sandbox.state.token_lifetime == 3600
    assert before + 3600 <= token.expires_at <= after + 3600


async def test_an_answer_without_scope_or_refresh_token_renews_by_logging_in_again() -> None:
    grants: Counter[str] = Counter()

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        grants[str(form["grant_type"])] += 1
        return web.json_response({"access_token": f"a{sum(grants.values())}",
                                  "token_type": "Bearer", "expires_in": 1})

    async def categories(request: web.Request) -> web.Response:
        return web.json_response([])

    async with client_of([web.post("/auth/token", token),
                          web.get("/v2.1/categories", categories)]
                         ) as client:
        user = client.as_user("u@example.com", "pw-123456")
        await user.categories.list()
        got = user.tokens.token
        assert got is not None
        assert got.scope == "" and got.refresh_token is None and got.lifetime == 1
        await asyncio.sleep(max(0.0, got.refresh_at - time.monotonic()) + 0.01)
        await user.categories.list()
    assert grants == {"password": 2}  # no refresh grant with a made-up refresh token


# ------------------------------------------------------------- where credentials go
async def test_the_token_request_uses_http_basic_and_the_api_the_bearer_token(
        sandbox: OxlinSandbox) -> None:
    seen = SentHeaders()
    async with (aiohttp.ClientSession(trace_configs=[seen.config()]) as http,
                new_client(sandbox, session=http) as client):
        alice = sandbox.users[0]
        user = client.as_user(alice.email, alice.password)
        await user.users.me()
        token = user.tokens.token
    assert token is not None
    (token_path, token_headers), (me_path, me_headers) = seen.sent
    assert (token_path, me_path) == ("/auth/token", "/api/v2.1/users/me")
    pair = f"{sandbox.client_id}:{sandbox.client_secret}".encode()
    assert token_headers["Authorization"] == "Basic " + base64.b64encode(pair).decode()
    assert me_headers["Authorization"] == f"Bearer {token.access_token}"
    assert requests(sandbox, TOKEN) == 1 and requests(sandbox, ME) == 1


def test_client_basic_auth_shows_no_credentials() -> None:
    auth = ClientBasicAuth(ClientCredentials("my-id", "s3cret-value"))
    assert repr(auth) == "<ClientBasicAuth>"
    assert str(auth) == "<ClientBasicAuth>"


def test_a_token_without_an_expiry_is_never_renewed_early() -> None:
    token = Token(access_token="x", expires_at=math.inf)
    assert token.refresh_at == math.inf


async def test_a_401_from_the_token_endpoint_is_not_replayed() -> None:
    # Only a bearer token can be renewed; the client's own credentials cannot.
    calls: list[str] = []

    async def token(request: web.Request) -> web.Response:
        calls.append(request.headers.get("Authorization", ""))
        return web.json_response({}, status=401)

    async with client_of([web.post("/auth/token", token)],
                         retry=ox.RetryPolicy.disabled()) as client:
        with pytest.raises(ox.OxlinError) as caught:
            await client.categories.list()
    assert caught.value.status == 401  # type: ignore[attr-defined]
    assert len(calls) == 1 and calls[0].startswith("Basic ")
