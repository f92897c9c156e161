"""Every operation's responses from the emulator validate against tests/data/openapi.yaml.

The emulator is driven over real HTTP with a plain `aiohttp.ClientSession`; each answer is
mapped onto the spec's server URL for its path and validated by openapi-core (status,
media type, body schema and declared headers: X-Request-ID, Location, Retry-After,
WWW-Authenticate, Cache-Control, Pragma). One test per (operation, status[, variant]);
429, 500 and 503 come from the fault switches, for every operation that lists them.
"""

from __future__ import annotations

import aiohttp
import pytest
from _openapi import (
    spec_operations,
    spec_statuses,
)
from _openapi_cases import (
    ALL_READ,
    CASES,
    FAULTS,
    REDIRECT,
    Case,
    Ctx,
    FaultSent,
    bad_query,
    case,
    insufficient,
    unauthorized,
)

from oxlin_async.testing import OxlinSandbox


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
    # The session's own link, with the widget parameters added (docs/oxlin-api §12.2).
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
