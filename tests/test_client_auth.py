"""Tokens as the client handles them (docs/oxlin-api §4.5), over real sockets.

Ground truth is the emulator's: `counters.grants` counts the token grants it answered
(per grant type), `counters.requests` every request per route, `state.refresh_tokens` the
refresh tokens still alive. A 401 the SDK replays shows up as one more request on the
route than calls made.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from _helpers import FAST, ME, TOKEN, WIDGET, grants, new_client, requests, truth_ids

import oxlin_async as ox
from oxlin_async._auth import BearerAuth, Token, TokenManager
from oxlin_async._options import RequestOptions
from oxlin_async._transport import as_nothing
from oxlin_async.testing import OxlinSandbox
from oxlin_async.testing._sandbox import SandboxUser

# ------------------------------------------------------------------------------- helpers


def refresh_tokens_of(sandbox: OxlinSandbox, user: SandboxUser) -> set[str]:
    return {v for v, t in sandbox.state.refresh_tokens.items() if t.user_id == int(user.id)}


async def raw_password_grant(sandbox: OxlinSandbox, user: SandboxUser) -> dict[str, Any]:
    """A user token obtained outside the SDK, as a caller's own login code would."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{sandbox.auth_url}/token",
            data={"grant_type": "password", "username": user.email,
                  "password": user.password, "client_id": sandbox.client_id,
                  "client_secret": sandbox.client_secret}) as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


@pytest.fixture
async def short_lived() -> AsyncIterator[OxlinSandbox]:
    """Access tokens that live one second (renewal margin: 0.1 s)."""
    async with OxlinSandbox(users=1, seed=11, token_lifetime=1) as box:
        yield box


# ------------------------------------------------------------------ lazy, cached, shared
async def test_client_token_is_fetched_lazily_and_reused(sandbox: OxlinSandbox,
                                                         client: ox.OxlinClient) -> None:
    assert grants(sandbox) == 0  # creating the client costs no I/O
    for _ in range(3):
        await client.categories.list()
    await client.users.create("lazy.reuse@example.com", "pw-lazy-1")
    assert sandbox.state.counters.grants == {"client_credentials": 1}
    assert requests(sandbox, TOKEN) == 1
    assert requests(sandbox, "GET /api/v2.1/categories") == 3


async def test_a_user_scope_is_free_and_two_scopes_of_one_user_share_the_token(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice, bob = sandbox.users[0], sandbox.users[1]
    first = client.as_user(alice.email, alice.password)
    second = client.as_user(alice.email.upper(), alice.password)  # e-mails compare casefolded
    assert grants(sandbox) == 0
    assert (await first.users.me()).id == alice.id
    assert (await second.users.me()).id == alice.id
    assert sandbox.state.counters.grants == {"password": 1}
    assert first.tokens is second.tokens

    other = client.as_user(bob.email, bob.password)
    assert (await other.users.me()).id == bob.id
    assert sandbox.state.counters.grants == {"password": 2}
    assert first.tokens.token is not None and other.tokens.token is not None
    assert first.tokens.token.access_token != other.tokens.token.access_token
    # and the client token is a third one
    await client.categories.list()
    assert client._tokens.token is not None
    assert client._tokens.token.access_token not in {first.tokens.token.access_token,
                                                     other.tokens.token.access_token}


# ---------------------------------------------------------------------------- single flight
async def test_cold_start_of_200_concurrent_requests_makes_one_grant(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    users = await asyncio.gather(*(user.users.me() for _ in range(200)))
    assert {u.id for u in users} == {alice.id}
    cats = await asyncio.gather(*(client.categories.list() for _ in range(200)))
    assert all(c == cats[0] for c in cats)
    assert sandbox.state.counters.grants == {"password": 1, "client_credentials": 1}


async def test_200_concurrent_requests_on_an_expired_token_make_one_renewal(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    await user.users.me()
    before, token_requests = grants(sandbox), requests(sandbox, TOKEN)

    # Fresh token: no grant, whatever the concurrency.
    await asyncio.gather(*(user.users.me() for _ in range(200)))
    assert grants(sandbox) == before

    # The server kills it; the client still believes it fresh: 200 answers 401.
    assert sandbox.expire_tokens() >= 1
    users = await asyncio.gather(*(user.users.me() for _ in range(200)))
    assert {u.id for u in users} == {alice.id}
    assert grants(sandbox) - before == 1
    assert requests(sandbox, TOKEN) - token_requests == 1
    assert sandbox.state.counters.grants["refresh_token"] == 1


async def test_200_concurrent_requests_inside_the_renewal_margin_make_one_renewal(
        short_lived: OxlinSandbox) -> None:
    sandbox = short_lived
    alice = sandbox.users[0]
    async with new_client(sandbox) as client:
        user = client.as_user(alice.email, alice.password)
        await user.users.me()
        token = user.tokens.token
        assert token is not None and token.lifetime == 1
        # Past refresh_at (0.9 s) but before expiry: stale for the client only.
        await asyncio.sleep(max(0.0, token.refresh_at - time.monotonic()) + 0.01)
        me_before = requests(sandbox, ME)
        await asyncio.gather(*(user.users.me() for _ in range(200)))
        assert sandbox.state.counters.grants == {"password": 1, "refresh_token": 1}
        assert requests(sandbox, ME) - me_before == 200  # no 401, no replay


# ----------------------------------------------------------------------- proactive renewal
def test_the_renewal_margin_scales_with_the_lifetime() -> None:
    for lifetime, margin in ((1, 0.1), (10, 1.0), (100, 10.0), (600, 60.0), (3600, 60.0)):
        token = Token(access_token="a", expires_at=1000.0 + lifetime, lifetime=lifetime)
        assert token.expires_at - token.refresh_at == pytest.approx(margin)
    forever = Token(access_token="a", expires_at=math.inf)
    assert forever.refresh_at == math.inf


async def test_renews_before_expiry_with_the_refresh_grant_and_never_meets_a_401(
        short_lived: OxlinSandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="oxlin_async")
    sandbox = short_lived
    alice = sandbox.users[0]
    async with new_client(sandbox) as client:
        user = client.as_user(alice.email, alice.password)
        calls = 0
        deadline = time.monotonic() + 2.3
        while time.monotonic() < deadline:
            assert (await user.users.me()).id == alice.id
            calls += 1
            await asyncio.sleep(0.02)
    counted = sandbox.state.counters
    assert counted.grants["password"] == 1
    assert counted.grants["refresh_token"] >= 2
    assert counted.requests[ME] == calls  # a 401 would have been replayed: one more
    assert not [r for r in caplog.records if "401" in r.getMessage()]


# ------------------------------------------------------------------------ refresh rotation
async def test_every_renewal_rotates_the_refresh_token(sandbox: OxlinSandbox,
                                                       client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    await user.users.me()
    used: list[str] = []
    for round_ in range(1, 5):
        assert user.tokens.token is not None and user.tokens.token.refresh_token
        current = user.tokens.token.refresh_token
        assert refresh_tokens_of(sandbox, alice) == {current}
        used.append(current)
        sandbox.expire_tokens()
        assert (await user.users.me()).id == alice.id
        assert sandbox.state.counters.grants["refresh_token"] == round_
        assert not set(used) & set(sandbox.state.refresh_tokens)  # old ones are dead
    assert sandbox.state.counters.grants["password"] == 1
    assert len(refresh_tokens_of(sandbox, alice)) == 1


# ------------------------------------------------------------ expiry in the middle of a walk
async def test_a_long_walk_survives_expiry_after_its_first_page(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    seen: list[str] = []
    pages = 0
    async for page in user.transactions.list(page_size=10).pages():
        pages += 1
        if pages == 1:
            assert sandbox.expire_tokens() >= 1  # look-ahead requests are in flight too
        seen.extend(t.id for t in page)
    assert pages >= 30
    assert len(seen) == len(set(seen))
    assert sorted(seen) == truth_ids(sandbox, alice)
    assert sandbox.state.counters.grants == {"password": 1, "refresh_token": 1}


# ---------------------------------------------------------------------------- 401 replay
async def test_a_401_is_replayed_once_then_raised(sandbox: OxlinSandbox,
                                                  client: ox.OxlinClient) -> None:
    renewals: list[Token | None] = []

    async def bogus(previous: Token | None, call: RequestOptions | None) -> Token:
        renewals.append(previous)
        return Token(access_token=f"at_bogus_{len(renewals)}", expires_at=math.inf)

    manager = TokenManager(bogus)
    url = sandbox.environment.api_url / "users" / "me"
    with pytest.raises(ox.AuthenticationError) as caught:
        await client.transport.request(as_nothing, RequestOptions(
            method="GET", url=url, auth=BearerAuth(manager)))
    assert caught.value.status == 401 and caught.value.code == "invalid_token"
    assert caught.value.request_id
    assert requests(sandbox, ME) == 2  # the first try and one replay, no loop
    assert len(renewals) == 2 and renewals[0] is None
    assert renewals[1] is not None and renewals[1].access_token == "at_bogus_1"


async def test_the_widget_replays_once_on_a_refused_token_in_its_form_body(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    await user.users.me()
    sandbox.expire_tokens()  # the client still believes its token fresh
    session = await user.widget.create_session()
    assert session.session_id in sandbox.state.widget_sessions
    assert requests(sandbox, WIDGET) == 2  # refused, renewed, replayed
    assert sandbox.state.counters.grants == {"password": 1, "refresh_token": 1}

    # a bad client secret is not the token's fault: no renewal, no replay
    raw = await raw_password_grant(sandbox, alice)
    async with ox.OxlinClient(sandbox.client_id, "0" * 20, environment=sandbox.environment,
                              retry=FAST) as wrong:
        with pytest.raises(ox.AuthenticationError) as caught:
            await wrong.as_user_token(raw["access_token"], raw["refresh_token"]
                                      ).widget.create_session()
    assert caught.value.code == "invalid_client"
    assert requests(sandbox, WIDGET) == 3
    assert sandbox.state.counters.grants == {"password": 2, "refresh_token": 1}


async def test_invalidate_drops_the_token_only_while_it_is_still_cached() -> None:
    made: list[Token] = []

    async def renew(previous: Token | None, call: RequestOptions | None) -> Token:
        made.append(Token(access_token=f"t{len(made)}", expires_at=math.inf))
        return made[-1]

    manager = TokenManager(renew)
    first = await manager.get()
    manager.invalidate(Token(access_token="t0", expires_at=math.inf))  # equal, not the same
    assert await manager.get() is first
    manager.invalidate(first)
    second = await manager.get()
    assert second is not first and len(made) == 2
    manager.invalidate(first)  # a late 401 for the old token must not drop the new one
    assert await manager.get() is second
    assert len(made) == 2


async def test_a_late_401_for_a_replaced_token_causes_no_second_renewal(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    await user.users.me()
    old = user.tokens.token
    sandbox.expire_tokens()
    await user.users.me()  # renewed
    new = user.tokens.token
    assert old is not None and new is not None and new is not old
    user.tokens.invalidate(old)
    await user.users.me()
    assert user.tokens.token is new
    assert sandbox.state.counters.grants["refresh_token"] == 1


# --------------------------------------------------------------------- fallback and failure
async def test_falls_back_to_the_password_grant_when_the_refresh_token_is_dead(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    await user.users.me()
    token = user.tokens.token
    assert token is not None and token.refresh_token
    del sandbox.state.refresh_tokens[token.refresh_token]  # revoked server-side
    sandbox.expire_tokens()
    token_requests = requests(sandbox, TOKEN)
    assert (await user.users.me()).id == alice.id
    assert sandbox.state.counters.grants == {"password": 2}
    assert requests(sandbox, TOKEN) - token_requests == 2  # refused refresh, then password


async def test_a_failed_renewal_gives_every_waiter_the_same_error_and_the_next_call_retries(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, "not-the-password")
    results = await asyncio.gather(*(user.users.me() for _ in range(50)),
                                   return_exceptions=True)
    assert all(isinstance(r, ox.InvalidGrantError) for r in results)
    assert len({id(r) for r in results}) == 1  # one renewal, one error, shared
    assert requests(sandbox, TOKEN) == 1
    assert requests(sandbox, ME) == 0

    # The condition goes away (the password is changed to this one): the next call works.
    sandbox.state.users[int(alice.id)].password = "not-the-password"
    assert (await user.users.me()).id == alice.id
    assert sandbox.state.counters.grants == {"password": 1}


async def test_a_renewal_that_keeps_failing_server_side_is_retried_then_shared(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    sandbox.set_faults(rate_500=1.0)
    results = await asyncio.gather(*(user.users.me() for _ in range(20)),
                                   return_exceptions=True)
    assert all(isinstance(r, ox.InternalServerError) for r in results)
    assert len({id(r) for r in results}) == 1
    # one renewal, retried by the policy (3 retries), not one per waiter
    assert requests(sandbox, TOKEN) == 1 + client.transport.retry.max_retries
    sandbox.set_faults(rate_500=0.0)
    assert (await user.users.me()).id == alice.id
    assert sandbox.state.counters.grants == {"password": 1}


# -------------------------------------------------------------------------- as_user_token
async def test_as_user_token_with_a_refresh_token_renews_itself(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    raw = await raw_password_grant(sandbox, alice)
    user = client.as_user_token(raw["access_token"], raw["refresh_token"])
    assert (await user.users.me()).id == alice.id
    assert sandbox.state.counters.grants == {"password": 1}  # the raw grant only
    sandbox.expire_tokens()
    assert (await user.users.me()).id == alice.id
    assert sandbox.state.counters.grants == {"password": 1, "refresh_token": 1}
    assert raw["refresh_token"] not in sandbox.state.refresh_tokens
    # and again, with the rotated refresh token
    sandbox.expire_tokens()
    assert (await user.users.me()).id == alice.id
    assert sandbox.state.counters.grants["refresh_token"] == 2


async def test_as_user_token_without_a_refresh_token_raises_once_expired(
        sandbox: OxlinSandbox, client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    raw = await raw_password_grant(sandbox, alice)

    # Killed server-side: one 401, no replay possible, AuthenticationError.
    user = client.as_user_token(raw["access_token"])
    assert (await user.users.me()).id == alice.id
    sandbox.expire_tokens()
    with pytest.raises(ox.AuthenticationError):
        await user.users.me()
    assert requests(sandbox, ME) == 2
    assert sandbox.state.counters.grants == {"password": 1}

    # Expired by the caller's own clock: raised before any request.
    raw = await raw_password_grant(sandbox, alice)
    user = client.as_user_token(raw["access_token"], expires_in=0.2)
    token = user.tokens.token
    # Nothing can renew it early, so it is used up to its expiry (no margin).
    assert token is not None and token.refresh_at == token.expires_at
    assert (await user.users.me()).id == alice.id
    await asyncio.sleep(0.25)
    before = requests(sandbox, ME)
    with pytest.raises(ox.AuthenticationError):
        await user.users.me()
    assert requests(sandbox, ME) == before


# ---------------------------------------------------------------------------- deleted user
async def test_a_deleted_user_fails_cleanly_afterwards(sandbox: OxlinSandbox,
                                                       client: ox.OxlinClient) -> None:
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    twin = client.as_user(alice.email, alice.password)  # shares the token manager
    raw = await raw_password_grant(sandbox, alice)
    outside = client.as_user_token(raw["access_token"], raw["refresh_token"])
    await user.users.me()
    await user.users.delete()
    assert int(alice.id) not in sandbox.state.users
    token_requests = requests(sandbox, TOKEN)

    for scope in (user, twin, client.as_user(alice.email, alice.password)):
        with pytest.raises(ox.InvalidGrantError):
            await scope.users.me()
    with pytest.raises(ox.InvalidGrantError):
        await outside.users.me()  # 401, then its refresh token is dead too
    # a bounded number of token requests: refresh then password at most, per call, no loop
    assert requests(sandbox, TOKEN) - token_requests <= 7


# ----------------------------------------------------------------------------- secrets
class Recorder:
    """Every token value the emulator hands out (wraps its issuing methods)."""

    def __init__(self, sandbox: OxlinSandbox, monkeypatch: pytest.MonkeyPatch) -> None:
        self.values: list[str] = []
        state = sandbox.state
        for name in ("issue_token", "issue_refresh_token"):
            monkeypatch.setattr(state, name, self._wrap(getattr(state, name)))

    def _wrap(self, issue: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            token = issue(*args, **kwargs)
            self.values.append(token.value)
            return token

        return wrapped


def secrets_of(sandbox: OxlinSandbox, recorder: Recorder, *extra: str) -> set[str]:
    basic = base64.b64encode(f"{sandbox.client_id}:{sandbox.client_secret}".encode()).decode()
    found = {sandbox.client_secret, basic, *recorder.values, *extra}
    found |= {u.password for u in sandbox.users}
    return {s for s in found if s}


def assert_no_secret(text: str, secrets: set[str]) -> None:
    leaked = [s for s in secrets if s in text]
    assert not leaked, f"secret leaked in {text!r}"


async def test_reprs_hold_no_secret(sandbox: OxlinSandbox, client: ox.OxlinClient,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(sandbox, monkeypatch)
    alice = sandbox.users[0]
    user = client.as_user(alice.email, alice.password)
    await user.users.me()
    await client.categories.list()
    session = await user.widget.create_session()
    token = user.tokens.token
    assert token is not None and token.refresh_token
    secrets = secrets_of(sandbox, recorder, session.session_id, session.add_connection_link)
    assert token.access_token in secrets and token.refresh_token in secrets
    for obj in (client, client._context, user, token, client._tokens.token, session,
                alice, sandbox, user.auth, user.widget_auth, client._context._token_auth,
                client._context._credentials):
        assert_no_secret(repr(obj), secrets)
        assert_no_secret(str(obj), secrets)


async def test_error_messages_hold_no_secret(sandbox: OxlinSandbox, client: ox.OxlinClient,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder(sandbox, monkeypatch)
    alice = sandbox.users[0]
    wrong_password = "wrong-Passw0rd-123"
    wrong_secret = "0123456789abcdef0123"
    errors: list[BaseException] = []

    with pytest.raises(ox.InvalidGrantError) as grant:
        await client.as_user(alice.email, wrong_password).users.me()
    errors.append(grant.value)
    async with ox.OxlinClient(sandbox.client_id, wrong_secret,
                              environment=sandbox.environment, retry=FAST) as bad:
        with pytest.raises(ox.InvalidClientError) as invalid:
            await bad.categories.list()
        errors.append(invalid.value)
        with pytest.raises(ox.InvalidClientError) as invalid_user:
            await bad.as_user(alice.email, alice.password).users.me()
        errors.append(invalid_user.value)
    # a token answer cut in half: the DecodeError's excerpt must not carry the token
    async with ox.OxlinClient(sandbox.client_id, sandbox.client_secret,
                              environment=sandbox.environment,
                              retry=ox.RetryPolicy.disabled()) as strict:
        sandbox.set_faults(rate_truncate=1.0)
        with pytest.raises(ox.DecodeError) as cut:
            await strict.as_user(alice.email, alice.password).users.me()
        errors.append(cut.value)
        sandbox.set_faults(rate_truncate=0.0)
    assert recorder.values  # the cut answer did issue a token
    secrets = secrets_of(sandbox, recorder, wrong_password, wrong_secret,
                         base64.b64encode(f"{sandbox.client_id}:{wrong_secret}".encode())
                         .decode())
    for error in errors:
        for text in (str(error), repr(error), repr(error.args), repr(vars(error))):
            assert_no_secret(text, secrets)


async def test_log_records_hold_no_secret(sandbox: OxlinSandbox,
                                          monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="oxlin_async")
    recorder = Recorder(sandbox, monkeypatch)
    alice, bob = sandbox.users[0], sandbox.users[1]
    retry = ox.RetryPolicy(max_retries=30, initial_backoff=0.001, max_backoff=0.005)
    async with new_client(sandbox, retry=retry) as client:
        sandbox.set_faults(rate_500=0.2, rate_502=0.1, rate_503=0.1, rate_drop=0.1,
                           rate_truncate=0.1, retry_after=0, seed=5)
        user = client.as_user(alice.email, alice.password)
        other = client.as_user(bob.email, bob.password)
        await user.transactions.list(page_size=50).collect()
        sandbox.expire_tokens()  # renewals (refresh grants) under faults
        await asyncio.gather(user.transactions.list(page_size=50).collect(),
                             other.accounts.list().collect(), client.categories.list())
        sandbox.set_faults(rate_500=0.0, rate_502=0.0, rate_503=0.0, rate_drop=0.0,
                           rate_truncate=0.0)
        sandbox.expire_tokens()
        await user.users.me()
        with pytest.raises(ox.InvalidGrantError):
            await client.as_user(alice.email, "wrong-Passw0rd-123").users.me()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("oxlin_async")]
    assert any("retry" in m for m in messages)  # the run did retry...
    assert any("401" in m for m in messages)  # ...and renew after a 401
    secrets = secrets_of(sandbox, recorder, "wrong-Passw0rd-123")
    formatter = logging.Formatter()
    for record in caplog.records:
        assert_no_secret(formatter.format(record), secrets)
        assert_no_secret(repr(record.args), secrets)
