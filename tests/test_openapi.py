"""Every operation's responses from the emulator validate against tests/data/openapi.yaml.

The emulator is driven over real HTTP with a plain `aiohttp.ClientSession`; each answer is
mapped onto the spec's server URL for its path and validated by openapi-core (status,
media type, body schema and declared headers: X-Request-ID, Location, Retry-After,
WWW-Authenticate, Cache-Control, Pragma). One test per (operation, status[, variant]);
429, 500 and 503 come from the fault switches, for every operation that lists them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from _openapi import (
    SpecMapper,
    SpecRequest,
    SpecResponse,
    check_request,
    check_response,
    find_operation,
    spec_operations,
    spec_statuses,
)
from openapi_core.exceptions import OpenAPIError
from yarl import URL

from oxlin_async.testing import OxlinSandbox
from oxlin_async.testing._state import UserData

REDIRECT = "https://app.example/callback"
ALL_READ = "openid profile accounts_read transactions_read"
#: injected status -> (Faults field, error code the spec requires)
FAULTS = {429: ("rate_429", "TOO_MANY_REQUESTS"), 500: ("rate_500", "INTERNAL_ERROR"),
          503: ("rate_503", "SERVICE_UNAVAILABLE")}


# ------------------------------------------------------------------------------- plumbing
@dataclass(frozen=True)
class Exchange:
    request: SpecRequest
    response: SpecResponse


class FaultSent(Exception):
    """Ends a scenario run for an injected fault once its exchange is recorded."""


class Ctx:
    """One scenario's view of the emulator. `send` is an exchange under test, checked
    against the spec as soon as it is answered; `call` is set-up traffic (tokens, widget
    sessions) that is neither checked nor faulted."""

    def __init__(self, case: Case, sandbox: OxlinSandbox,
                 http: aiohttp.ClientSession) -> None:
        self.case = case
        self.sandbox = sandbox
        self.http = http
        self.fault = case.fault
        self.to_spec = SpecMapper.for_sandbox(sandbox)
        self.exchanges: list[Exchange] = []

    # URLs -------------------------------------------------------------------------------
    def api(self, path: str) -> URL:
        return URL(self.sandbox.api_url + path)

    @property
    def token_url(self) -> URL:
        return URL(self.sandbox.auth_url + "/token")

    @property
    def session_url(self) -> URL:
        return URL(self.sandbox.embed_url + "/widget/widget_session")

    @property
    def page_url(self) -> URL:
        return URL(self.sandbox.embed_origin + "/widget/add_connection")

    # HTTP -------------------------------------------------------------------------------
    async def _exchange(self, method: str, url: URL, *, headers: Mapping[str, str] | None,
                        json_body: Any, form: Mapping[str, str] | None) -> Exchange:
        sent = dict(headers or {})
        body: bytes | None = None
        if json_body is not None:
            body = json.dumps(json_body).encode()
            sent["Content-Type"] = "application/json"
        elif form is not None:
            body = urlencode(form).encode()
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        async with self.http.request(method, url, headers=sent, data=body,
                                     allow_redirects=False) as resp:
            data = await resp.read()
            request = SpecRequest.build(method, self.to_spec(resp.request_info.url),
                                        resp.request_info.headers, body)
            return Exchange(request, SpecResponse.build(resp.status, resp.headers, data))

    async def call(self, method: str, url: URL, *, headers: Mapping[str, str] | None = None,
                   json_body: Any = None, form: Mapping[str, str] | None = None
                   ) -> SpecResponse:
        ex = await self._exchange(method, url, headers=headers, json_body=json_body,
                                  form=form)
        assert ex.response.status_code < 300, (url, ex.response.data)
        return ex.response

    async def send(self, method: str, url: URL, *, headers: Mapping[str, str] | None = None,
                   json_body: Any = None, form: Mapping[str, str] | None = None
                   ) -> SpecResponse:
        if self.fault is not None:
            self.sandbox.set_faults(**{FAULTS[self.fault][0]: 1.0})
        try:
            ex = await self._exchange(method, url, headers=headers, json_body=json_body,
                                      form=form)
        finally:
            if self.fault is not None:
                self.sandbox.set_faults(**{FAULTS[self.fault][0]: 0.0})
        self.exchanges.append(ex)
        verify(self.case, ex)
        if self.fault is not None:
            raise FaultSent  # one injected answer is the point; skip the rest
        return ex.response

    # credentials and ground truth -------------------------------------------------------
    def client_form(self) -> dict[str, str]:
        return {"client_id": self.sandbox.client_id,
                "client_secret": self.sandbox.client_secret}

    def basic(self) -> dict[str, str]:
        raw = f"{self.sandbox.client_id}:{self.sandbox.client_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}

    async def grant(self, user: int = 0, scope: str | None = None) -> dict[str, Any]:
        who = self.sandbox.users[user]
        form = {"grant_type": "password", "username": who.email, "password": who.password,
                **self.client_form()}
        if scope is not None:
            form["scope"] = scope
        answer: dict[str, Any] = (await self.call("POST", self.token_url, form=form)).json()
        return answer

    async def user_token(self, user: int = 0, scope: str | None = None) -> str:
        token: str = (await self.grant(user, scope))["access_token"]
        return token

    async def client_token(self, scope: str | None = None) -> str:
        form = {"grant_type": "client_credentials", **self.client_form()}
        if scope is not None:
            form["scope"] = scope
        token: str = (await self.call("POST", self.token_url, form=form)).json()["access_token"]
        return token

    async def bearer(self, user: int = 0, scope: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.user_token(user, scope)}"}

    async def client_bearer(self, scope: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.client_token(scope)}"}

    def user_id(self, user: int = 0) -> str:
        return self.sandbox.users[user].id

    def data(self, user: int = 0) -> UserData:
        return self.sandbox.state.data(int(self.user_id(user)))

    async def widget_link(self, user: int = 0) -> URL:
        """A new widget session's `_links.add_connection` (session_id in its query)."""
        form = {**self.client_form(), "access_token": await self.user_token(user)}
        answer = (await self.call("POST", self.session_url, form=form)).json()
        return URL(answer["_links"]["add_connection"])

    async def add_connection(self, channel: str, **params: str) -> int:
        """Run the emulator's widget form (README §12.4) with the default test bank; the
        new connection's id. The form post is the emulator's own, not a spec operation."""
        link = await self.widget_link()
        form = {**link.query, "redirect_uri": REDIRECT, "channel": channel, "login": "dev",
                "password": "dev", "action": "connect", **params}
        async with self.http.post(link.with_query(None), data=form,
                                  allow_redirects=False) as resp:
            assert resp.status == 302, await resp.text()
            result = URL(resp.headers["Location"]).query
        assert result["status"] == "success", result
        return int(result["connection_id"])


Scenario = Callable[[Ctx], Awaitable[None]]
BAD_TOKEN = {"Authorization": "Bearer at_this-token-was-never-issued"}


@dataclass(frozen=True)
class Case:
    operation: str
    status: int
    variant: str
    run: Scenario
    error: str | None = None
    fault: int | None = None

    @property
    def id(self) -> str:
        return "-".join([self.operation, str(self.status), *filter(None, [self.variant])])


CASES: list[Case] = []


def verify(case: Case, ex: Exchange) -> None:
    """The exchange is the case's operation and status, and the answer matches the spec."""
    response = ex.response
    where = f"{ex.request.method.upper()} {ex.request.full_url}"
    assert find_operation(ex.request)[0] == case.operation, where
    assert response.status_code == case.status, (where, response.data[:300])
    check_response(ex.request, response)
    if case.error is not None:
        assert response.json()["error"] == case.error, where
    if response.status_code < 300:
        # The request as sent is the documented form too, so the success means something.
        check_request(ex.request)


def case(operation: str, status: int, variant: str = "", *,
         error: str | None = None) -> Callable[[Scenario], Scenario]:
    def register(run: Scenario) -> Scenario:
        CASES.append(Case(operation, status, variant, run, error))
        return run
    return register


def unauthorized(operation: str, method: str, path: str) -> None:
    """401 `invalid_token` for a never-issued bearer token (WWW-Authenticate: Bearer)."""
    async def run(ctx: Ctx) -> None:
        await ctx.send(method, ctx.api(path.format(ctx=ctx)), headers=BAD_TOKEN)
    case(operation, 401, "unknown_token", error="invalid_token")(run)


def insufficient(operation: str, method: str, path: str, *, scope: str | None,
                 variant: str, body: Any = None) -> None:
    """403 `insufficient_scope`: a user token with only `scope`, or a client token (None)."""
    async def run(ctx: Ctx) -> None:
        headers = (await ctx.client_bearer() if scope is None
                   else await ctx.bearer(scope=scope))
        await ctx.send(method, ctx.api(path.format(ctx=ctx)), headers=headers,
                       json_body=body)
    case(operation, 403, variant, error="insufficient_scope")(run)


def bad_query(operation: str, path: str, **query: str) -> None:
    """400 `BAD_PARAMETER` for a list query parameter the reference rejects."""
    async def run(ctx: Ctx) -> None:
        await ctx.send("GET", ctx.api(path).with_query(query), headers=await ctx.bearer())
    variant = "_".join(f"{name}_{value}" for name, value in query.items())
    case(operation, 400, variant, error="BAD_PARAMETER")(run)


# ---------------------------------------------------------------------------- create_token
@case("create_token", 200, "client_credentials_basic")
async def _token_client(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.token_url, headers=ctx.basic(),
                   form={"grant_type": "client_credentials", "scope": "users_create"})


@case("create_token", 200, "password_body_auth")
async def _token_password(ctx: Ctx) -> None:
    who = ctx.sandbox.users[0]
    resp = await ctx.send("POST", ctx.token_url, form={
        "grant_type": "password", "username": who.email, "password": who.password,
        "scope": ALL_READ, "provider": "connect", **ctx.client_form()})
    assert "refresh_token" in resp.json()


@case("create_token", 200, "refresh_token_json")
async def _token_refresh(ctx: Ctx) -> None:
    refresh = (await ctx.grant())["refresh_token"]
    await ctx.send("POST", ctx.token_url, json_body={
        "grant_type": "refresh_token", "refresh_token": refresh, **ctx.client_form()})


@case("create_token", 400, "missing_grant_type", error="invalid_request")
async def _token_no_grant(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.token_url, headers=ctx.basic(), form={"scope": "users_create"})


@case("create_token", 400, "both_client_auth_methods", error="invalid_request")
async def _token_both_auth(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.token_url, headers=ctx.basic(),
                   form={"grant_type": "client_credentials", **ctx.client_form()})


@case("create_token", 400, "wrong_password", error="invalid_grant")
async def _token_wrong_password(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.token_url, headers=ctx.basic(), form={
        "grant_type": "password", "username": ctx.sandbox.users[0].email,
        "password": "not-the-password"})


@case("create_token", 400, "used_refresh_token", error="invalid_grant")
async def _token_used_refresh(ctx: Ctx) -> None:
    refresh = (await ctx.grant())["refresh_token"]
    form = {"grant_type": "refresh_token", "refresh_token": refresh}
    await ctx.call("POST", ctx.token_url, headers=ctx.basic(), form=form)
    await ctx.send("POST", ctx.token_url, headers=ctx.basic(), form=form)


@case("create_token", 400, "unsupported_grant_type", error="unsupported_grant_type")
async def _token_bad_grant(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.token_url, headers=ctx.basic(),
                   form={"grant_type": "authorization_code", "code": "abc"})


@case("create_token", 400, "invalid_scope", error="invalid_scope")
async def _token_bad_scope(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.token_url, headers=ctx.basic(),
                   form={"grant_type": "client_credentials", "scope": "no_such_scope"})


@case("create_token", 401, "wrong_secret", error="invalid_client")
async def _token_wrong_secret(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.token_url, form={
        "grant_type": "client_credentials", "client_id": ctx.sandbox.client_id,
        "client_secret": "wrong"})


@case("create_token", 401, "no_client_auth", error="invalid_client")
async def _token_no_client(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.token_url, form={"grant_type": "client_credentials"})


@case("create_token", 401, "malformed_basic", error="invalid_client")
async def _token_malformed_basic(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.token_url, headers={"Authorization": "Basic %%%"},
                   form={"grant_type": "client_credentials"})


# ----------------------------------------------------------------------------- create_user
@case("create_user", 201, "json")
async def _user_create(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.api("/users"), headers=await ctx.client_bearer("users_create"),
                   json_body={"email": "new.user@example.com", "password": "s3cret"})


@case("create_user", 201, "form")
async def _user_create_form(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.api("/users"), headers=await ctx.client_bearer("users_create"),
                   form={"email": "form.user@example.com", "password": "s3cret"})


async def _create_user_with(ctx: Ctx, body: dict[str, str]) -> None:
    await ctx.send("POST", ctx.api("/users"), headers=await ctx.client_bearer(),
                   json_body=body)


@case("create_user", 400, "invalid_email", error="BAD_PARAMETER")
async def _user_bad_email(ctx: Ctx) -> None:
    await _create_user_with(ctx, {"email": "not-an-address", "password": "x"})


@case("create_user", 400, "password_too_long", error="BAD_PARAMETER")
async def _user_long_password(ctx: Ctx) -> None:
    await _create_user_with(ctx, {"email": "long@example.com", "password": "p" * 73})


@case("create_user", 400, "unknown_field", error="BAD_PARAMETER")
async def _user_unknown_field(ctx: Ctx) -> None:
    await _create_user_with(ctx, {"email": "x@example.com", "password": "x", "name": "X"})


@case("create_user", 409, "existing_email", error="CONFLICT")
async def _user_conflict(ctx: Ctx) -> None:
    await _create_user_with(ctx, {"email": ctx.sandbox.users[0].email.upper(),
                                  "password": "x"})


unauthorized("create_user", "POST", "/users")
insufficient("create_user", "POST", "/users", scope="profile", variant="missing_scope",
             body={"email": "scope@example.com", "password": "x"})


# ------------------------------------------------------------------------ users/me, users/id
@case("get_current_user", 200)
async def _me(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.api("/users/me"), headers=await ctx.bearer(scope="profile"))


@case("get_current_user", 401, "expired_token", error="invalid_token")
async def _me_expired(ctx: Ctx) -> None:
    headers = await ctx.bearer()
    ctx.sandbox.expire_tokens()
    await ctx.send("GET", ctx.api("/users/me"), headers=headers)


unauthorized("get_current_user", "GET", "/users/me")
insufficient("get_current_user", "GET", "/users/me", scope=None, variant="client_token")
insufficient("get_current_user", "GET", "/users/me", scope="accounts_read",
             variant="missing_scope")


@case("get_user", 200)
async def _user_get(ctx: Ctx) -> None:
    for user in range(len(ctx.sandbox.users)):
        await ctx.send("GET", ctx.api(f"/users/{ctx.user_id(user)}"),
                       headers=await ctx.bearer(user))


unauthorized("get_user", "GET", "/users/{ctx.sandbox.users[0].id}")
insufficient("get_user", "GET", "/users/{ctx.sandbox.users[1].id}", scope="profile",
             variant="other_user")
insufficient("get_user", "GET", "/users/{ctx.sandbox.users[0].id}", scope=None,
             variant="client_token")
insufficient("get_user", "GET", "/users/{ctx.sandbox.users[0].id}", scope="accounts_read",
             variant="missing_scope")


@case("delete_user", 204)
async def _user_delete(ctx: Ctx) -> None:
    await ctx.send("DELETE", ctx.api(f"/users/{ctx.user_id()}"),
                   headers=await ctx.bearer(scope="profile_edit"))


unauthorized("delete_user", "DELETE", "/users/{ctx.sandbox.users[0].id}")
insufficient("delete_user", "DELETE", "/users/{ctx.sandbox.users[1].id}",
             scope="profile_edit", variant="other_user")
insufficient("delete_user", "DELETE", "/users/{ctx.sandbox.users[0].id}", scope="profile",
             variant="missing_scope")


# ----------------------------------------------------------------------------- connections
@case("list_connections", 200)
async def _connections(ctx: Ctx) -> None:
    for user in range(len(ctx.sandbox.users)):
        resp = await ctx.send("GET", ctx.api("/connections"), headers=await ctx.bearer(user))
        assert len(resp.json()) == len(ctx.data(user).connections) > 0


@case("list_connections", 200, "filtered_sorted_empty_page")
async def _connections_query(ctx: Ctx) -> None:
    headers = await ctx.bearer(scope="accounts_manage")
    await ctx.send("GET", ctx.api("/connections").with_query(
        status="SUCCESS", sort="-creation_date,name", limit="2"), headers=headers)
    await ctx.send("GET", ctx.api("/connections").with_query(page="999"), headers=headers)


bad_query("list_connections", "/connections", limit="0")
bad_query("list_connections", "/connections", sort="bogus")
bad_query("list_connections", "/connections", status="BOGUS")
unauthorized("list_connections", "GET", "/connections")
insufficient("list_connections", "GET", "/connections", scope="profile",
             variant="missing_scope")
insufficient("list_connections", "GET", "/connections", scope=None, variant="client_token")


def _first_connection(ctx: Ctx, user: int = 0) -> int:
    return next(iter(ctx.data(user).connections))


@case("get_connection", 200)
async def _connection(ctx: Ctx) -> None:
    for user in range(len(ctx.sandbox.users)):
        headers = await ctx.bearer(user)
        for connection_id in ctx.data(user).connections:
            await ctx.send("GET", ctx.api(f"/connections/{connection_id}"), headers=headers)


@case("get_connection", 404, "unknown_id", error="RESOURCE_UNKNOWN")
async def _connection_unknown(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.api("/connections/999999999"), headers=await ctx.bearer())


@case("get_connection", 404, "other_user", error="RESOURCE_UNKNOWN")
async def _connection_other(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.api(f"/connections/{_first_connection(ctx, 1)}"),
                   headers=await ctx.bearer())


@case("get_connection", 200, "widget_created")
async def _connection_widget(ctx: Ctx) -> None:
    """Connections made through the widget: both channels, consent per account, no sync."""
    made = [await ctx.add_connection("REDIRECT", consent_per_account="true",
                                     auto_sync="false"),
            await ctx.add_connection("EMBEDDED")]
    headers = await ctx.bearer()
    for connection_id in made:
        await ctx.send("GET", ctx.api(f"/connections/{connection_id}"), headers=headers)


unauthorized("get_connection", "GET", "/connections/1")
insufficient("get_connection", "GET", "/connections/1", scope="profile",
             variant="missing_scope")


@case("delete_connection", 204)
async def _connection_delete(ctx: Ctx) -> None:
    await ctx.send("DELETE", ctx.api(f"/connections/{_first_connection(ctx)}"),
                   headers=await ctx.bearer(scope="connections_manage"))


@case("delete_connection", 404, "unknown_id", error="RESOURCE_UNKNOWN")
async def _connection_delete_unknown(ctx: Ctx) -> None:
    await ctx.send("DELETE", ctx.api("/connections/999999999"), headers=await ctx.bearer())


unauthorized("delete_connection", "DELETE", "/connections/1")
insufficient("delete_connection", "DELETE", "/connections/1", scope="accounts_manage",
             variant="missing_scope")


# -------------------------------------------------------------------------------- accounts
@case("list_accounts", 200)
async def _accounts(ctx: Ctx) -> None:
    for user in range(len(ctx.sandbox.users)):
        resp = await ctx.send("GET", ctx.api("/accounts"), headers=await ctx.bearer(user))
        assert len(resp.json()) == len(ctx.data(user).accounts) > 0


@case("list_accounts", 200, "filtered_sorted")
async def _accounts_query(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.api("/accounts").with_query(
        connection_id=str(_first_connection(ctx)), type="CHECKINGS", usage="PERSONAL",
        sort="-balance,name", q="a", page="1", limit="500"), headers=await ctx.bearer())


@case("list_accounts", 200, "widget_created")
async def _accounts_widget(ctx: Ctx) -> None:
    connection_id = await ctx.add_connection("EMBEDDED")
    resp = await ctx.send("GET", ctx.api("/accounts").with_query(
        connection_id=str(connection_id)), headers=await ctx.bearer())
    assert resp.json()


bad_query("list_accounts", "/accounts", page="0")
bad_query("list_accounts", "/accounts", type="BOGUS")
bad_query("list_accounts", "/accounts", limit="ten")
unauthorized("list_accounts", "GET", "/accounts")
insufficient("list_accounts", "GET", "/accounts", scope="profile", variant="missing_scope")


def _first_account(ctx: Ctx, user: int = 0) -> int:
    return next(iter(ctx.data(user).accounts))


@case("get_account", 200)
async def _account(ctx: Ctx) -> None:
    for user in range(len(ctx.sandbox.users)):
        headers = await ctx.bearer(user)
        for account_id in ctx.data(user).accounts:
            await ctx.send("GET", ctx.api(f"/accounts/{account_id}"), headers=headers)


@case("get_account", 404, "unknown_id", error="RESOURCE_UNKNOWN")
async def _account_unknown(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.api("/accounts/999999999"), headers=await ctx.bearer())


@case("get_account", 404, "other_user", error="RESOURCE_UNKNOWN")
async def _account_other(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.api(f"/accounts/{_first_account(ctx, 1)}"),
                   headers=await ctx.bearer())


unauthorized("get_account", "GET", "/accounts/1")
insufficient("get_account", "GET", "/accounts/1", scope="profile", variant="missing_scope")


@case("update_account", 200)
async def _account_update(ctx: Ctx) -> None:
    headers = await ctx.bearer(scope="accounts_manage")
    url = ctx.api(f"/accounts/{_first_account(ctx)}")
    for status in ("CLOSED", "ACTIVE"):
        resp = await ctx.send("PATCH", url, headers=headers, json_body={"status": status})
        assert resp.json()["status"] == status


@case("update_account", 400, "bad_status", error="BAD_PARAMETER")
async def _account_update_bad(ctx: Ctx) -> None:
    await ctx.send("PATCH", ctx.api(f"/accounts/{_first_account(ctx)}"),
                   headers=await ctx.bearer(), json_body={"status": "ERROR"})


@case("update_account", 400, "extra_field", error="BAD_PARAMETER")
async def _account_update_extra(ctx: Ctx) -> None:
    await ctx.send("PATCH", ctx.api(f"/accounts/{_first_account(ctx)}"),
                   headers=await ctx.bearer(), json_body={"status": "CLOSED", "name": "X"})


@case("update_account", 404, "unknown_id", error="RESOURCE_UNKNOWN")
async def _account_update_unknown(ctx: Ctx) -> None:
    await ctx.send("PATCH", ctx.api("/accounts/999999999"), headers=await ctx.bearer(),
                   json_body={"status": "CLOSED"})


unauthorized("update_account", "PATCH", "/accounts/1")
insufficient("update_account", "PATCH", "/accounts/1", scope="accounts_read",
             variant="missing_scope", body={"status": "CLOSED"})


# ---------------------------------------------------------------------------- transactions
@case("list_transactions", 200)
async def _transactions(ctx: Ctx) -> None:
    for user in range(len(ctx.sandbox.users)):
        resp = await ctx.send("GET", ctx.api("/transactions").with_query(limit="500"),
                              headers=await ctx.bearer(user))
        expected = sum(1 for _ in ctx.data(user).all_transactions())
        assert len(resp.json()) == min(expected, 500) > 0


@case("list_transactions", 200, "filtered_sorted")
async def _transactions_query(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.api("/transactions").with_query(
        account_id=str(_first_account(ctx)), included_statuses="BOOKED,PENDING",
        excluded_statuses="PENDING", min_amount="-1000", max_amount="1000",
        start_date="0", end_date="4000000000", account_type="CHECKINGS",
        sort="-date,amount", page="1", limit="50"),
        headers=await ctx.bearer(scope="transactions_read"))


@case("list_transactions", 200, "widget_created")
async def _transactions_widget(ctx: Ctx) -> None:
    connection_id = await ctx.add_connection("REDIRECT")
    headers = await ctx.bearer()
    for account in ctx.data().accounts.values():
        if account.connection_id == connection_id:
            await ctx.send("GET", ctx.api("/transactions").with_query(
                account_id=str(account.id), limit="500"), headers=headers)
    assert ctx.exchanges


bad_query("list_transactions", "/transactions", limit="501")
bad_query("list_transactions", "/transactions", sort="label")
bad_query("list_transactions", "/transactions", included_statuses="BOOKED,NOPE")
bad_query("list_transactions", "/transactions", min_amount="abc")
unauthorized("list_transactions", "GET", "/transactions")
insufficient("list_transactions", "GET", "/transactions", scope="profile",
             variant="missing_scope")


def _first_transaction(ctx: Ctx, user: int = 0) -> int:
    return next(ctx.data(user).all_transactions()).id


@case("get_transaction", 200)
async def _transaction(ctx: Ctx) -> None:
    for user in range(len(ctx.sandbox.users)):
        headers = await ctx.bearer(user)
        for txs in ctx.data(user).transactions.values():
            for tx in txs[:5]:
                await ctx.send("GET", ctx.api(f"/transactions/{tx.id}"), headers=headers)


@case("get_transaction", 404, "unknown_id", error="RESOURCE_UNKNOWN")
async def _transaction_unknown(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.api("/transactions/1"), headers=await ctx.bearer())


@case("get_transaction", 404, "other_user", error="RESOURCE_UNKNOWN")
async def _transaction_other(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.api(f"/transactions/{_first_transaction(ctx, 1)}"),
                   headers=await ctx.bearer())


unauthorized("get_transaction", "GET", "/transactions/1")
insufficient("get_transaction", "GET", "/transactions/1", scope="profile",
             variant="missing_scope")


# ------------------------------------------------------------------------------ categories
@case("list_categories", 200)
async def _categories(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.api("/categories"), headers=await ctx.bearer(scope="openid"))
    await ctx.send("GET", ctx.api("/categories"), headers=await ctx.client_bearer())


unauthorized("list_categories", "GET", "/categories")


# -------------------------------------------------------------------------------- widget
@case("create_widget_session", 200, "form")
async def _session(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.session_url,
                   form={**ctx.client_form(), "access_token": await ctx.user_token()})


@case("create_widget_session", 200, "json_captive_mode")
async def _session_json(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.session_url.with_query(captive_mode="false"),
                   json_body={**ctx.client_form(), "access_token": await ctx.user_token()})


@case("create_widget_session", 400, "missing_access_token", error="invalid_request")
async def _session_missing(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.session_url, form=ctx.client_form())


@case("create_widget_session", 401, "invalid_client", error="invalid_client")
async def _session_bad_client(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.session_url, form={
        "client_id": ctx.sandbox.client_id, "client_secret": "wrong",
        "access_token": await ctx.user_token()})


@case("create_widget_session", 401, "client_token", error="invalid_token")
async def _session_client_token(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.session_url,
                   form={**ctx.client_form(), "access_token": await ctx.client_token()})


@case("create_widget_session", 401, "unknown_token", error="invalid_token")
async def _session_unknown_token(ctx: Ctx) -> None:
    await ctx.send("POST", ctx.session_url,
                   form={**ctx.client_form(), "access_token": "at_never-issued"})


@case("get_add_connection_page", 200, "bank_list")
async def _page(ctx: Ctx) -> None:
    # The session's own link, with the widget parameters added (README §12.2).
    link = await ctx.widget_link()
    await ctx.send("GET", link.update_query(
        redirect_uri=REDIRECT, auto_sync="false", locale="fr_FR",
        expected_account_type="PAYMENT", countries="FR,BE", font_color="#1a1a1a"))


@case("get_add_connection_page", 200, "test_bank_form")
async def _page_form(ctx: Ctx) -> None:
    link = await ctx.widget_link()
    await ctx.send("GET", link.update_query(redirect_url=REDIRECT, bank="linxo_test_bank"))


@case("get_add_connection_page", 400, "missing_redirect_uri")
async def _page_no_redirect(ctx: Ctx) -> None:
    await ctx.send("GET", await ctx.widget_link())


@case("get_add_connection_page", 400, "relative_redirect_uri")
async def _page_bad_redirect(ctx: Ctx) -> None:
    link = await ctx.widget_link()
    await ctx.send("GET", link.update_query(redirect_uri="/callback"))


@case("get_add_connection_page", 400, "missing_session_id")
async def _page_no_session(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.page_url.with_query(redirect_uri=REDIRECT))


@case("get_add_connection_page", 404, "unknown_session")
async def _page_unknown_session(ctx: Ctx) -> None:
    await ctx.send("GET", ctx.page_url.with_query(session_id="x" * 32, redirect_uri=REDIRECT))


# --------------------------------------------------------------------------- injected faults
def _fault_cases() -> list[Case]:
    """429/500/503 for every operation that lists them, on its first success scenario."""
    out = []
    for operation, statuses in spec_statuses().items():
        first = next((c for c in CASES if c.operation == operation and c.status < 300), None)
        for status in sorted(statuses & FAULTS.keys()):
            if first is not None:
                out.append(Case(operation, status, "", first.run, FAULTS[status][1], status))
    return out


CASES.extend(_fault_cases())
# Spec order, then status (registration order within), for a readable test list.
_ORDER = {operation: i for i, operation in enumerate(spec_operations())}
CASES.sort(key=lambda c: (_ORDER[c.operation], c.status))


# ----------------------------------------------------------------------------------- tests
@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_response_matches_spec(case: Case, sandbox: OxlinSandbox,
                                     http: aiohttp.ClientSession) -> None:
    ctx = Ctx(case, sandbox, http)
    try:
        await case.run(ctx)  # every `ctx.send` is checked by `verify`
    except FaultSent:
        assert case.fault is not None
    assert ctx.exchanges, "the scenario sent nothing to check"


def test_every_operation_is_covered() -> None:
    assert {c.operation for c in CASES} == set(spec_operations())


def test_every_documented_status_is_covered() -> None:
    documented = {(op, s) for op, statuses in spec_statuses().items() for s in statuses}
    covered = {(c.operation, c.status) for c in CASES}
    assert covered == documented, {"missing": documented - covered,
                                   "undocumented": covered - documented}


# The checks have teeth: hand-made answers that break the contract are rejected.
_API = "https://sandbox-api.oxlin.io/v2.1"
_RID = {"X-Request-ID": "r1"}
_JSON = {"Content-Type": "application/json", **_RID}


def _err(code: str) -> bytes:
    return json.dumps({"error": code, "error_description": "x"}).encode()


BROKEN = {
    "no_request_id": ("GET", f"{_API}/categories", 200, {"Content-Type": "application/json"},
                      b"[]"),
    "401_without_www_authenticate": ("GET", f"{_API}/categories", 401, _JSON,
                                     _err("invalid_token")),
    "401_basic_challenge_on_api": ("GET", f"{_API}/categories", 401,
                                   {**_JSON, "WWW-Authenticate": 'Basic realm="oxlin"'},
                                   _err("invalid_token")),
    "wrong_error_code": ("GET", f"{_API}/accounts/1", 404, _JSON, _err("NOT_FOUND")),
    "429_without_retry_after": ("GET", f"{_API}/accounts", 429, _JSON,
                                _err("TOO_MANY_REQUESTS")),
    "retry_after_not_seconds": ("GET", f"{_API}/accounts", 503,
                                {**_JSON, "Retry-After": "soon"}, _err("SERVICE_UNAVAILABLE")),
    "undocumented_status": ("GET", f"{_API}/categories", 405, _JSON, _err("METHOD")),
    "html_instead_of_json": ("GET", f"{_API}/categories", 200,
                             {"Content-Type": "text/html", **_RID}, b"[]"),
    "location_not_v2_1": ("POST", f"{_API}/users", 201, {**_RID, "Location": "/users/1"},
                          b""),
    "body_on_204": ("DELETE", f"{_API}/users/1", 204, _RID, b"{}"),
    "null_optional_field": ("GET", f"{_API}/users/me", 200, _JSON,
                            b'{"id":"1","email":"a@b.co","creation_date":1,"first_name":null}'),
    "iso_timestamp": ("GET", f"{_API}/users/me", 200, _JSON,
                      b'{"id":"1","email":"a@b.co","creation_date":"2024-01-01T00:00:00Z"}'),
    "relative_widget_link": (
        "POST", "https://sandbox-embed.oxlin.io/v2.1/widget/widget_session", 200, _JSON,
        b'{"session_id":"s","_links":{"add_connection":"/widget/add_connection?session_id=s"}}'),
    "token_cache_control": ("POST", "https://sandbox-auth.oxlin.io/token", 200,
                            {**_JSON, "Cache-Control": "max-age=60"},
                            b'{"access_token":"a","token_type":"Bearer","expires_in":1,'
                            b'"scope":""}'),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_checker_rejects(name: str) -> None:
    method, url, status, headers, body = BROKEN[name]
    request = SpecRequest.build(method, URL(url), {}, None)
    with pytest.raises((OpenAPIError, AssertionError)):
        check_response(request, SpecResponse.build(status, headers, body))


def test_the_shipped_reference_and_the_test_copy_agree() -> None:
    """docs/oxlin-api/openapi.yaml is what the code cites; tests/data/ is what it is tested
    against: one changed without the other would test against a stale contract."""
    root = Path(__file__).parent.parent
    shipped = (root / "docs" / "oxlin-api" / "openapi.yaml").read_bytes()
    assert shipped == (Path(__file__).parent / "data" / "openapi.yaml").read_bytes()
