"""The emulator's auth host over real HTTP: ``POST {auth}/token`` (docs/oxlin-api §4, §10, §14).

These tests pin the server's behaviour with a plain `aiohttp.ClientSession`, not the SDK.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
import attrs
import pytest

from oxlin_async.testing import OxlinSandbox, SandboxUser
from oxlin_async.testing._records import SCOPES, Client

ALL_SCOPES = frozenset(SCOPES)
QUICKSTART_USER_SCOPES = ("openid profile profile_edit accounts_read accounts_manage "
                          "connections_manage transactions_read")
OTHER_ID, OTHER_SECRET = "other-client", "0123456789abcdef0123"
OTHER_SCOPES = frozenset({"users_create", "profile", "accounts_read"})


@attrs.frozen
class Answer:
    status: int
    headers: Mapping[str, str]
    body: Any


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def creds(sandbox: OxlinSandbox) -> dict[str, str]:
    return {"client_id": sandbox.client_id, "client_secret": sandbox.client_secret}


async def token(http: aiohttp.ClientSession, sandbox: OxlinSandbox,
                data: Mapping[str, str] | Sequence[tuple[str, str]] | None = None, *,
                json: Any = None, headers: Mapping[str, str] | None = None) -> Answer:
    async with http.post(f"{sandbox.auth_url}/token", data=data, json=json,
                         headers=headers) as resp:
        assert resp.headers.get("X-Request-ID"), "every response has X-Request-ID"
        body = await resp.json(content_type=None)
        return Answer(resp.status, resp.headers, body)


async def password_grant(http: aiohttp.ClientSession, sandbox: OxlinSandbox,
                         user: SandboxUser, scope: str | None = None) -> Answer:
    data = {"grant_type": "password", "username": user.email, "password": user.password,
            **creds(sandbox)}
    if scope is not None:
        data["scope"] = scope
    answer = await token(http, sandbox, data)
    assert answer.status == 200, answer.body
    return answer


async def refresh(http: aiohttp.ClientSession, sandbox: OxlinSandbox, value: str,
                  scope: str | None = None, client: tuple[str, str] | None = None) -> Answer:
    data = {"grant_type": "refresh_token", "refresh_token": value}
    if scope is not None:
        data["scope"] = scope
    return await token(http, sandbox, data,
                       headers=basic(*(client or (sandbox.client_id, sandbox.client_secret))))


async def api_get(http: aiohttp.ClientSession, sandbox: OxlinSandbox, path: str,
                  access_token: str) -> Answer:
    async with http.get(f"{sandbox.api_url}{path}",
                        headers={"Authorization": f"Bearer {access_token}"}) as resp:
        assert resp.headers.get("X-Request-ID")
        return Answer(resp.status, resp.headers, await resp.json(content_type=None))


def assert_oauth_error(answer: Answer, status: int, error: str) -> None:
    assert answer.status == status, answer.body
    assert set(answer.body) == {"error", "error_description"}, answer.body
    assert answer.body["error"] == error
    assert isinstance(answer.body["error_description"], str)
    assert answer.body["error_description"]
    if error == "invalid_client":
        assert answer.headers["WWW-Authenticate"] == 'Basic realm="oxlin"'


def assert_invalid_token(answer: Answer) -> None:
    assert answer.status == 401, answer.body
    assert answer.body == {"error": "invalid_token",
                           "error_description": answer.body["error_description"]}
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


def add_other_client(sandbox: OxlinSandbox) -> Client:
    return sandbox.state.add_client(Client(OTHER_ID, OTHER_SECRET, OTHER_SCOPES))


# ------------------------------------------------------------------- client credentials
async def test_client_credentials_with_basic_auth_as_in_the_quickstart(
        sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> None:
    answer = await token(http, sandbox,
                         {"grant_type": "client_credentials", "scope": "users_create"},
                         headers=basic(sandbox.client_id, sandbox.client_secret))
    assert answer.status == 200, answer.body
    assert set(answer.body) == {"access_token", "token_type", "expires_in", "scope"}
    assert answer.body["token_type"] == "Bearer"
    assert answer.body["expires_in"] == 3600
    assert answer.body["scope"] == "users_create"
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Pragma"] == "no-cache"
    issued = sandbox.state.tokens[answer.body["access_token"]]
    assert issued.user_id is None
    assert issued.client_id == sandbox.client_id
    assert issued.scopes == {"users_create"}
    # A client token is good for the endpoints that take any token.
    assert (await api_get(http, sandbox, "/categories", answer.body["access_token"])).status == 200


async def test_client_credentials_with_credentials_in_the_form_body(
        sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> None:
    answer = await token(http, sandbox, {"grant_type": "client_credentials",
                                         "scope": "users_create", **creds(sandbox)})
    assert answer.status == 200, answer.body
    assert answer.body["scope"] == "users_create"
    assert "refresh_token" not in answer.body


@pytest.mark.parametrize("with_basic", [False, True], ids=["body-credentials", "basic"])
async def test_client_credentials_with_a_json_body(sandbox: OxlinSandbox,
                                                   http: aiohttp.ClientSession,
                                                   with_basic: bool) -> None:
    body = {"grant_type": "client_credentials", "scope": "users_create"}
    headers = None
    if with_basic:
        headers = basic(sandbox.client_id, sandbox.client_secret)
    else:
        body |= creds(sandbox)
    answer = await token(http, sandbox, json=body, headers=headers)
    assert answer.status == 200, answer.body
    assert answer.body["scope"] == "users_create"
    assert answer.body["access_token"] in sandbox.state.tokens


async def test_password_grant_with_a_json_body(sandbox: OxlinSandbox,
                                               http: aiohttp.ClientSession) -> None:
    user = sandbox.users[0]
    answer = await token(http, sandbox, json={
        "grant_type": "password", "username": user.email, "password": user.password,
        "scope": "profile", **creds(sandbox)})
    assert answer.status == 200, answer.body
    assert answer.body["refresh_token"] in sandbox.state.refresh_tokens


async def test_both_client_authentication_methods_at_once_is_invalid_request(
        sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> None:
    answer = await token(http, sandbox, {"grant_type": "client_credentials", **creds(sandbox)},
                         headers=basic(sandbox.client_id, sandbox.client_secret))
    assert_oauth_error(answer, 400, "invalid_request")
    # Also with a JSON body, and when the body's client_id disagrees with Basic.
    answer = await token(http, sandbox, json={"grant_type": "client_credentials",
                                              **creds(sandbox)},
                         headers=basic(sandbox.client_id, sandbox.client_secret))
    assert_oauth_error(answer, 400, "invalid_request")
    answer = await token(http, sandbox, {"grant_type": "client_credentials",
                                         "client_id": "someone-else"},
                         headers=basic(sandbox.client_id, sandbox.client_secret))
    assert_oauth_error(answer, 400, "invalid_request")
    assert not sandbox.state.tokens


@pytest.mark.parametrize("how", ["none", "wrong-secret-basic", "wrong-secret-body",
                                 "unknown-client-basic", "unknown-client-body",
                                 "only-client-id", "malformed-basic", "empty-secret"])
async def test_missing_or_wrong_client_is_invalid_client(sandbox: OxlinSandbox,
                                                         http: aiohttp.ClientSession,
                                                         how: str) -> None:
    data = {"grant_type": "client_credentials"}
    headers: dict[str, str] = {}
    if how == "wrong-secret-basic":
        headers = basic(sandbox.client_id, "f" * 20)
    elif how == "wrong-secret-body":
        data |= {"client_id": sandbox.client_id, "client_secret": "f" * 20}
    elif how == "unknown-client-basic":
        headers = basic("00000000-0000-4000-8000-000000000000", sandbox.client_secret)
    elif how == "unknown-client-body":
        data |= {"client_id": "nobody", "client_secret": sandbox.client_secret}
    elif how == "only-client-id":
        data |= {"client_id": sandbox.client_id}
    elif how == "malformed-basic":
        headers = {"Authorization": "Basic not*base64!"}
    elif how == "empty-secret":
        headers = basic(sandbox.client_id, "")
    answer = await token(http, sandbox, data, headers=headers)
    assert_oauth_error(answer, 401, "invalid_client")
    assert not sandbox.state.tokens
    assert not sandbox.state.counters.grants


# ------------------------------------------------------------------------------ password
async def test_password_grant_as_in_the_docs(sandbox: OxlinSandbox,
                                             http: aiohttp.ClientSession) -> None:
    user = sandbox.users[0]
    answer = await token(http, sandbox, {
        "grant_type": "password", "username": user.email, "password": user.password,
        "scope": QUICKSTART_USER_SCOPES, "provider": "connect", **creds(sandbox)})
    assert answer.status == 200, answer.body
    assert set(answer.body) == {"access_token", "token_type", "expires_in", "scope",
                                "refresh_token"}
    assert answer.body["token_type"] == "Bearer"
    assert answer.body["expires_in"] == 3600
    assert set(answer.body["scope"].split()) == set(QUICKSTART_USER_SCOPES.split())
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Pragma"] == "no-cache"
    issued = sandbox.state.tokens[answer.body["access_token"]]
    assert issued.user_id == int(user.id)
    assert sandbox.state.refresh_tokens[answer.body["refresh_token"]].user_id == int(user.id)
    me = await api_get(http, sandbox, "/users/me", answer.body["access_token"])
    assert me.status == 200
    assert me.body["id"] == user.id


@pytest.mark.parametrize("transform", [str.upper, str.title, lambda e: e.swapcase()],
                         ids=["upper", "title", "swapcase"])
async def test_password_grant_compares_emails_case_insensitively(
        sandbox: OxlinSandbox, http: aiohttp.ClientSession, transform: Any) -> None:
    user = sandbox.users[1]
    answer = await token(http, sandbox, {
        "grant_type": "password", "username": transform(user.email),
        "password": user.password, **creds(sandbox)})
    assert answer.status == 200, answer.body
    assert sandbox.state.tokens[answer.body["access_token"]].user_id == int(user.id)


async def test_password_grant_with_a_wrong_password_or_user_is_invalid_grant(
        sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> None:
    user = sandbox.users[0]
    other = sandbox.users[1]
    for username, password in [(user.email, user.password + "x"),
                               (user.email, user.password.upper()),
                               (user.email, other.password),
                               ("nobody@example.com", user.password)]:
        answer = await token(http, sandbox, {"grant_type": "password", "username": username,
                                             "password": password, **creds(sandbox)})
        assert_oauth_error(answer, 400, "invalid_grant")
    assert not sandbox.state.tokens
    assert not sandbox.state.refresh_tokens


@pytest.mark.parametrize("provider", ["connect", "linxoConnect"])
async def test_provider_is_accepted_and_ignored(sandbox: OxlinSandbox,
                                                http: aiohttp.ClientSession,
                                                provider: str) -> None:
    user = sandbox.users[0]
    answer = await token(http, sandbox, {
        "grant_type": "password", "username": user.email, "password": user.password,
        "provider": provider, "scope": "profile", **creds(sandbox)})
    assert answer.status == 200, answer.body
    assert answer.body["scope"] == "profile"
    answer = await token(http, sandbox, {"grant_type": "client_credentials",
                                         "provider": provider, "unknown_param": "x"},
                         headers=basic(sandbox.client_id, sandbox.client_secret))
    assert answer.status == 200, answer.body
    answer = await refresh(http, sandbox, (await password_grant(
        http, sandbox, user)).body["refresh_token"])
    assert answer.status == 200, answer.body


async def test_without_scope_a_token_gets_all_the_clients_scopes(
        sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> None:
    answer = await token(http, sandbox, {"grant_type": "client_credentials"},
                         headers=basic(sandbox.client_id, sandbox.client_secret))
    assert set(answer.body["scope"].split()) == ALL_SCOPES
    answer = await password_grant(http, sandbox, sandbox.users[0])
    assert set(answer.body["scope"].split()) == ALL_SCOPES
    assert sandbox.state.tokens[answer.body["access_token"]].scopes == ALL_SCOPES

    add_other_client(sandbox)
    answer = await token(http, sandbox, {"grant_type": "client_credentials"},
                         headers=basic(OTHER_ID, OTHER_SECRET))
    assert answer.status == 200, answer.body
    assert set(answer.body["scope"].split()) == OTHER_SCOPES


async def test_a_scope_the_client_may_not_have_is_invalid_scope(
        sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> None:
    answer = await token(http, sandbox, {"grant_type": "client_credentials",
                                         "scope": "users_create payments_write"},
                         headers=basic(sandbox.client_id, sandbox.client_secret))
    assert_oauth_error(answer, 400, "invalid_scope")
    add_other_client(sandbox)
    user = sandbox.users[0]
    answer = await token(http, sandbox, {
        "grant_type": "password", "username": user.email, "password": user.password,
        "scope": "profile transactions_read", "client_id": OTHER_ID,
        "client_secret": OTHER_SECRET})
    assert_oauth_error(answer, 400, "invalid_scope")
    answer = await token(http, sandbox, {
        "grant_type": "password", "username": user.email, "password": user.password,
        "scope": "profile accounts_read", "client_id": OTHER_ID,
        "client_secret": OTHER_SECRET})
    assert answer.status == 200, answer.body
    assert set(answer.body["scope"].split()) == {"profile", "accounts_read"}


# ------------------------------------------------------------------------------- refresh
async def test_refresh_rotates_the_refresh_token(sandbox: OxlinSandbox,
                                                 http: aiohttp.ClientSession) -> None:
    user = sandbox.users[0]
    first = await password_grant(http, sandbox, user, "profile accounts_read")
    old = first.body["refresh_token"]
    second = await refresh(http, sandbox, old)
    assert second.status == 200, second.body
    assert set(second.body) == {"access_token", "token_type", "expires_in", "scope",
                                "refresh_token"}
    assert second.headers["Cache-Control"] == "no-store"
    assert second.headers["Pragma"] == "no-cache"
    new = second.body["refresh_token"]
    assert new != old
    assert second.body["access_token"] != first.body["access_token"]
    assert set(second.body["scope"].split()) == {"profile", "accounts_read"}
    assert old not in sandbox.state.refresh_tokens
    assert sandbox.state.refresh_tokens[new].user_id == int(user.id)
    me = await api_get(http, sandbox, "/users/me", second.body["access_token"])
    assert me.status == 200
    assert me.body["id"] == user.id
    # The used refresh token is dead; the new one works (once).
    assert_oauth_error(await refresh(http, sandbox, old), 400, "invalid_grant")
    third = await refresh(http, sandbox, new)
    assert third.status == 200, third.body
    assert_oauth_error(await refresh(http, sandbox, new), 400, "invalid_grant")
    # Refreshing leaves the earlier access tokens alone.
    assert (await api_get(http, sandbox, "/users/me", first.body["access_token"])).status == 200


async def test_refresh_with_credentials_in_the_body(sandbox: OxlinSandbox,
                                                    http: aiohttp.ClientSession) -> None:
    first = await password_grant(http, sandbox, sandbox.users[0])
    answer = await token(http, sandbox, {"grant_type": "refresh_token",
                                         "refresh_token": first.body["refresh_token"],
                                         **creds(sandbox)})
    assert answer.status == 200, answer.body


async def test_unknown_refresh_token_is_invalid_grant(sandbox: OxlinSandbox,
                                                      http: aiohttp.ClientSession) -> None:
    assert_oauth_error(await refresh(http, sandbox, "rt_does_not_exist"), 400, "invalid_grant")
    # A client token's value is no refresh token either.
    client = await token(http, sandbox, {"grant_type": "client_credentials"},
                         headers=basic(sandbox.client_id, sandbox.client_secret))
    assert_oauth_error(await refresh(http, sandbox, client.body["access_token"]), 400,
                       "invalid_grant")


async def test_refresh_by_another_client_is_invalid_grant(sandbox: OxlinSandbox,
                                                          http: aiohttp.ClientSession) -> None:
    add_other_client(sandbox)
    first = await password_grant(http, sandbox, sandbox.users[0], "profile")
    answer = await refresh(http, sandbox, first.body["refresh_token"],
                           client=(OTHER_ID, OTHER_SECRET))
    assert_oauth_error(answer, 400, "invalid_grant")
    # ...and the other way round.
    user = sandbox.users[1]
    other = await token(http, sandbox, {
        "grant_type": "password", "username": user.email, "password": user.password,
        "client_id": OTHER_ID, "client_secret": OTHER_SECRET})
    assert other.status == 200, other.body
    assert_oauth_error(await refresh(http, sandbox, other.body["refresh_token"]), 400,
                       "invalid_grant")
    answer = await refresh(http, sandbox, other.body["refresh_token"],
                           client=(OTHER_ID, OTHER_SECRET))
    assert answer.status == 200, answer.body
    assert sandbox.state.tokens[answer.body["access_token"]].client_id == OTHER_ID


async def test_refresh_may_narrow_the_scope_but_not_widen_it(
        sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> None:
    first = await password_grant(http, sandbox, sandbox.users[0],
                                 "profile accounts_read transactions_read")
    narrowed = await refresh(http, sandbox, first.body["refresh_token"], "profile")
    assert narrowed.status == 200, narrowed.body
    assert narrowed.body["scope"] == "profile"
    assert sandbox.state.tokens[narrowed.body["access_token"]].scopes == {"profile"}
    accounts = await api_get(http, sandbox, "/accounts", narrowed.body["access_token"])
    assert accounts.status == 403
    assert accounts.body["error"] == "insufficient_scope"

    # RFC 6749 §6: the new refresh token keeps the scope of the one it replaces, so the
    # original grant can be asked for again after a narrowed refresh.
    again = await refresh(http, sandbox, narrowed.body["refresh_token"],
                          "accounts_read transactions_read")
    assert again.status == 200, again.body
    assert set(again.body["scope"].split()) == {"accounts_read", "transactions_read"}
    # Asking for a scope outside the original grant is invalid_scope (even one the client has).
    widened = await refresh(http, sandbox, again.body["refresh_token"],
                            "profile connections_manage")
    assert_oauth_error(widened, 400, "invalid_scope")
    widened = await refresh(http, sandbox, again.body["refresh_token"], "users_create")
    assert_oauth_error(widened, 400, "invalid_scope")
    full = await refresh(http, sandbox, again.body["refresh_token"])
    assert full.status == 200, full.body
    assert set(full.body["scope"].split()) == {"profile", "accounts_read", "transactions_read"}


# ------------------------------------------------------------------ malformed requests
async def test_unknown_grant_type_is_unsupported_grant_type(sandbox: OxlinSandbox,
                                                            http: aiohttp.ClientSession) -> None:
    for grant in ("authorization_code", "implicit", "PASSWORD", "urn:ietf:params:oauth:x"):
        answer = await token(http, sandbox, {"grant_type": grant},
                             headers=basic(sandbox.client_id, sandbox.client_secret))
        assert_oauth_error(answer, 400, "unsupported_grant_type")


@pytest.mark.parametrize("data", [
    {},
    {"grant_type": ""},
    {"scope": "users_create"},
    {"grant_type": "password", "password": "x"},
    {"grant_type": "password", "username": "", "password": "x"},
    {"grant_type": "password", "username": "user0000.s7@example.com"},
    {"grant_type": "refresh_token"},
], ids=["empty", "empty-grant", "no-grant", "no-username", "empty-username", "no-password",
        "no-refresh-token"])
async def test_a_missing_parameter_is_invalid_request(sandbox: OxlinSandbox,
                                                      http: aiohttp.ClientSession,
                                                      data: dict[str, str]) -> None:
    answer = await token(http, sandbox, data,
                         headers=basic(sandbox.client_id, sandbox.client_secret))
    assert_oauth_error(answer, 400, "invalid_request")


@pytest.mark.parametrize("repeated", ["grant_type", "scope", "username", "client_id"])
async def test_a_repeated_form_parameter_is_invalid_request(sandbox: OxlinSandbox,
                                                            http: aiohttp.ClientSession,
                                                            repeated: str) -> None:
    user = sandbox.users[0]
    fields = {"grant_type": "password", "username": user.email, "password": user.password,
              "scope": "profile", **creds(sandbox)}
    data = [*fields.items(), (repeated, fields[repeated])]
    answer = await token(http, sandbox, data)
    assert_oauth_error(answer, 400, "invalid_request")
    assert not sandbox.state.tokens


async def test_a_malformed_json_body_is_invalid_request(sandbox: OxlinSandbox,
                                                        http: aiohttp.ClientSession) -> None:
    for raw in (b"{not json", b"[1, 2]", b'"grant_type"'):
        answer = await token(http, sandbox, raw,
                             headers={**basic(sandbox.client_id, sandbox.client_secret),
                                      "Content-Type": "application/json"})
        assert_oauth_error(answer, 400, "invalid_request")


async def test_error_responses_carry_distinct_request_ids(sandbox: OxlinSandbox,
                                                          http: aiohttp.ClientSession) -> None:
    ids = set()
    for _ in range(3):
        answer = await token(http, sandbox, {"grant_type": "nope"},
                             headers=basic(sandbox.client_id, sandbox.client_secret))
        ids.add(answer.headers["X-Request-ID"])
    assert len(ids) == 3


# --------------------------------------------------------------------------- lifetimes
async def test_access_tokens_expire_after_their_lifetime(http: aiohttp.ClientSession) -> None:
    async with OxlinSandbox(users=1, seed=2, token_lifetime=1) as sandbox:
        user = sandbox.users[0]
        grant = await password_grant(http, sandbox, user, "profile")
        assert grant.body["expires_in"] == 1
        assert (await api_get(http, sandbox, "/users/me", grant.body["access_token"])).status == 200
        client = await token(http, sandbox, {"grant_type": "client_credentials"},
                             headers=basic(sandbox.client_id, sandbox.client_secret))
        assert client.body["expires_in"] == 1
        await asyncio.sleep(1.1)
        assert_invalid_token(await api_get(http, sandbox, "/users/me",
                                           grant.body["access_token"]))
        assert_invalid_token(await api_get(http, sandbox, "/categories",
                                           client.body["access_token"]))
        # Refresh tokens have no time limit in the emulator.
        renewed = await refresh(http, sandbox, grant.body["refresh_token"])
        assert renewed.status == 200, renewed.body
        me = await api_get(http, sandbox, "/users/me", renewed.body["access_token"])
        assert me.status == 200
        assert me.body["id"] == user.id


async def test_missing_or_unknown_bearer_tokens_are_invalid_token(
        sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> None:
    assert_invalid_token(await api_get(http, sandbox, "/users/me", "at_unknown"))
    assert_invalid_token(await api_get(http, sandbox, "/categories", ""))
    async with http.get(f"{sandbox.api_url}/categories") as resp:
        assert_invalid_token(Answer(resp.status, resp.headers, await resp.json()))
    grant = await password_grant(http, sandbox, sandbox.users[0])
    # A refresh token is not an access token, and a Basic header is no bearer token.
    assert_invalid_token(await api_get(http, sandbox, "/users/me", grant.body["refresh_token"]))
    async with http.get(f"{sandbox.api_url}/users/me",
                        headers=basic(sandbox.client_id, sandbox.client_secret)) as resp:
        assert_invalid_token(Answer(resp.status, resp.headers, await resp.json()))


async def test_expire_tokens_kills_access_tokens(sandbox: OxlinSandbox,
                                                 http: aiohttp.ClientSession) -> None:
    first, second = sandbox.users[0], sandbox.users[1]
    a = await password_grant(http, sandbox, first, "profile")
    b = await password_grant(http, sandbox, second, "profile")
    client = await token(http, sandbox, {"grant_type": "client_credentials"},
                         headers=basic(sandbox.client_id, sandbox.client_secret))

    assert sandbox.expire_tokens(first.id) == 1
    assert_invalid_token(await api_get(http, sandbox, "/users/me", a.body["access_token"]))
    assert (await api_get(http, sandbox, "/users/me", b.body["access_token"])).status == 200
    assert (await api_get(http, sandbox, "/categories", client.body["access_token"])).status == 200

    # Only users' tokens, then every token.
    assert sandbox.expire_tokens(clients=False) == 1
    assert_invalid_token(await api_get(http, sandbox, "/users/me", b.body["access_token"]))
    assert (await api_get(http, sandbox, "/categories", client.body["access_token"])).status == 200
    assert sandbox.expire_tokens() == 1
    assert_invalid_token(await api_get(http, sandbox, "/categories", client.body["access_token"]))
    assert not sandbox.state.tokens

    # Refresh tokens survive; an SDK renews with them.
    renewed = await refresh(http, sandbox, a.body["refresh_token"])
    assert renewed.status == 200, renewed.body
    assert (await api_get(http, sandbox, "/users/me", renewed.body["access_token"])).status == 200


async def test_grants_are_counted_per_grant_type(sandbox: OxlinSandbox,
                                                 http: aiohttp.ClientSession) -> None:
    user = sandbox.users[0]
    for _ in range(2):
        answer = await token(http, sandbox, {"grant_type": "client_credentials"},
                             headers=basic(sandbox.client_id, sandbox.client_secret))
        assert answer.status == 200
    grant = await password_grant(http, sandbox, user)
    assert (await refresh(http, sandbox, grant.body["refresh_token"])).status == 200
    # Failures count as requests but not as grants.
    assert (await refresh(http, sandbox, grant.body["refresh_token"])).status == 400
    assert (await token(http, sandbox, {"grant_type": "password", "username": user.email,
                                        "password": "wrong", **creds(sandbox)})).status == 400
    assert (await token(http, sandbox, {"grant_type": "client_credentials"})).status == 401
    assert dict(sandbox.state.counters.grants) == {"client_credentials": 2, "password": 1,
                                                   "refresh_token": 1}
    assert sandbox.state.counters.requests["POST /auth/token"] == 7
