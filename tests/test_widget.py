"""The emulator's embed host: widget sessions and add-connection pages (docs/oxlin-api §12-13)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import attrs
import pytest
from _helpers import FakeClock, Form, parse_page
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

from oxlin_async.testing import _widget
from oxlin_async.testing._records import Client, User
from oxlin_async.testing._state import EmulatorState, Token
from oxlin_async.testing._testbank import bundled_testbanks, load_testbank
from oxlin_async.testing._widget import widget_routes

REDIRECT = "https://app.example/callback"
PAYMENT_TYPES = {"CHECKINGS", "CREDIT_CARD"}
INLINE_BANK = """\
CREDENTIALS|alice|s3cret
CREDENTIALS_OWNER|ALICE LIDDELL

ACCOUNT|uid-1|0001|01/03/24|250.5|Checkings||false||Compte courant|||FR7612345|EUR
TRANSACTION|-12.3|02/03/24|CAFE DU COIN
TRANSACTION|100|03/03/24|VIREMENT RECU
ACCOUNT|uid-2|0002|01/03/24|1000|Savings||false||Livret A|||FR7654321|EUR
TRANSACTION|5|04/03/24|INTERETS
"""


# ------------------------------------------------------------------------------ fixtures
@attrs.define
class Env:
    state: EmulatorState
    clock: FakeClock
    http: aiohttp.ClientSession
    base: URL
    user: User
    user_token: Token

    def url(self, path: str) -> URL:
        return self.base.with_path(path)

    @property
    def page_url(self) -> URL:
        return self.url("/embed/widget/add_connection")


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FakeClock()
    state = EmulatorState(clock=clock)
    state.add_client(Client("app", "app-secret"))
    state.add_client(Client("other", "other-secret"))
    user = state.create_user("harry@example.com", "hedwig-1234")
    token = state.issue_token("app", user.id, frozenset({"openid", "connections_manage"}))
    app = web.Application()
    app.add_routes(widget_routes(state))
    server = TestServer(app)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as http:
            yield Env(state, clock, http, server.make_url("/"), user, token)
    finally:
        await server.close()


# ------------------------------------------------------------------------------- helpers
async def new_session(env: Env, **overrides: str) -> str:
    data = {"client_id": "app", "client_secret": "app-secret",
            "access_token": env.user_token.value, **overrides}
    async with env.http.post(env.url("/embed/v2.1/widget/widget_session"), data=data) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    session_id: str = body["session_id"]
    return session_id


async def get_page(env: Env, session_id: str | None, **params: str) -> tuple[int, str]:
    query = {"redirect_uri": REDIRECT, **params}
    if session_id is not None:
        query["session_id"] = session_id
    async with env.http.get(env.page_url.with_query(query), allow_redirects=False) as resp:
        if resp.status == 200:
            assert resp.content_type == "text/html"
        return resp.status, await resp.text()


async def post_form(env: Env, fields: Mapping[str, str]) -> tuple[int, str, URL | None]:
    async with env.http.post(env.page_url, data=dict(fields), allow_redirects=False) as resp:
        location = resp.headers.get("Location")
        return resp.status, await resp.text(), None if location is None else URL(location)


async def bank_form(env: Env, session_id: str, **params: str) -> Form:
    status, text = await get_page(env, session_id, bank="linxo_test_bank", **params)
    assert status == 200, text
    (form,) = parse_page(text).forms
    return form


async def connect(env: Env, session_id: str | None = None, *, redirect: str = REDIRECT,
                  query: Mapping[str, str] | None = None,
                  **inputs: str) -> tuple[int, str, URL | None]:
    """Open the test bank form, fill it in like a browser and post it."""
    session_id = session_id or await new_session(env)
    form = await bank_form(env, session_id, redirect_uri=redirect, **(query or {}))
    fields = {**form.fields, "login": "dev", "password": "dev", "action": "connect", **inputs}
    return await post_form(env, fields)


def success_id(location: URL | None, redirect: str = REDIRECT) -> int:
    assert location is not None
    assert str(location).startswith(redirect)
    assert location.query["status"] == "success"
    assert location.query["result"] == "created"
    assert "error" not in location.query
    return int(location.query["connection_id"])


def assert_failure(location: URL | None, error: str, redirect: str = REDIRECT) -> None:
    assert location is not None
    assert location.with_query(None) == URL(redirect)
    assert dict(location.query) == {"status": "failure", "error": error}


# ------------------------------------------------------------------------ widget_session
@pytest.mark.parametrize("path", ["/embed/v2.1/widget/widget_session", "/embed/widget_session"])
@pytest.mark.parametrize("as_json", [False, True])
async def test_widget_session(env: Env, path: str, as_json: bool) -> None:
    data = {"client_id": "app", "client_secret": "app-secret",
            "access_token": env.user_token.value}
    kwargs: dict[str, Any] = {"json": data} if as_json else {"data": data}
    async with env.http.post(env.url(path), **kwargs) as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        body = await resp.json()
    session_id = body["session_id"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", session_id)
    assert body["_links"]["add_connection"] == str(
        env.page_url.with_query(session_id=session_id))
    session = env.state.widget_sessions[session_id]
    assert (session.client_id, session.user_id) == ("app", env.user.id)
    assert session.expires_at == env.clock.now + 3600


async def test_widget_session_ignores_captive_mode_and_issues_distinct_ids(env: Env) -> None:
    url = env.url("/embed/v2.1/widget/widget_session").with_query(captive_mode="false")
    data = {"client_id": "app", "client_secret": "app-secret",
            "access_token": env.user_token.value}
    async with env.http.post(url, data=data) as resp:
        assert resp.status == 200
        first = (await resp.json())["session_id"]
    assert first != await new_session(env)


@pytest.mark.parametrize("missing", ["client_id", "client_secret", "access_token"])
async def test_widget_session_missing_field(env: Env, missing: str) -> None:
    data = {"client_id": "app", "client_secret": "app-secret",
            "access_token": env.user_token.value}
    del data[missing]
    async with env.http.post(env.url("/embed/v2.1/widget/widget_session"), data=data) as resp:
        assert resp.status == 400
        body = await resp.json()
    assert body["error"] == "invalid_request"
    assert missing in body["error_description"]
    assert not env.state.widget_sessions


async def test_widget_session_malformed_json(env: Env) -> None:
    async with env.http.post(env.url("/embed/v2.1/widget/widget_session"), data=b"[1",
                             headers={"Content-Type": "application/json"}) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "invalid_request"


@pytest.mark.parametrize(("client_id", "secret"), [("app", "wrong"), ("nobody", "app-secret")])
async def test_widget_session_bad_client(env: Env, client_id: str, secret: str) -> None:
    data = {"client_id": client_id, "client_secret": secret,
            "access_token": env.user_token.value}
    async with env.http.post(env.url("/embed/v2.1/widget/widget_session"), data=data) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="oxlin"'
        assert (await resp.json())["error"] == "invalid_client"


@pytest.mark.parametrize("case", ["client_token", "other_client", "expired", "unknown"])
async def test_widget_session_bad_token(env: Env, case: str) -> None:
    state = env.state
    if case == "client_token":
        token = state.issue_token("app", None, frozenset({"users_create"})).value
    elif case == "other_client":
        token = state.issue_token("other", env.user.id, frozenset({"openid"})).value
    elif case == "expired":
        token = env.user_token.value
        env.clock.now += state.token_lifetime + 1
    else:
        token = "at_unknown"
    data = {"client_id": "app", "client_secret": "app-secret", "access_token": token}
    async with env.http.post(env.url("/embed/v2.1/widget/widget_session"), json=data) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        assert (await resp.json())["error"] == "invalid_token"
    assert not state.widget_sessions


# --------------------------------------------------------------------------------- pages
async def test_bank_list_page_links_to_the_test_bank(env: Env) -> None:
    session_id = await new_session(env)
    status, text = await get_page(env, session_id, auto_sync="false", locale="fr_FR",
                                  font_color="#333333")
    assert status == 200
    assert "Linxo test bank" in text
    page = parse_page(text)
    (link,) = page.links
    query = URL(link).query
    assert URL(link).with_query(None) == env.page_url
    assert query["bank"] == "linxo_test_bank"
    assert query["session_id"] == session_id
    assert query["redirect_uri"] == REDIRECT
    assert query["auto_sync"] == "false"
    assert query["locale"] == "fr_FR"
    (cancel,) = page.forms
    assert cancel.method == "post"
    assert cancel.action == str(env.page_url)
    assert cancel.fields["session_id"] == session_id


async def test_test_bank_page_has_the_form(env: Env) -> None:
    session_id = await new_session(env)
    form = await bank_form(env, session_id, cancel_url="https://app.example/cancel",
                           consent_per_account="true")
    assert form.method == "post"
    assert form.action == str(env.page_url)
    assert form.choices["channel"] == ["REDIRECT", "EMBEDDED"]
    assert {"login", "password", "config", "config_name"} <= set(form.choices)
    assert "fr/harry_potter" in form.choices["config_name"]
    assert form.fields["config_name"] == ""
    assert form.fields["session_id"] == session_id
    assert form.fields["redirect_uri"] == REDIRECT
    assert form.fields["cancel_url"] == "https://app.example/cancel"
    assert form.fields["consent_per_account"] == "true"
    assert form.fields["attempt"] == "0"
    assert "bank" not in form.fields


async def test_test_bank_page_text(env: Env) -> None:
    status, text = await get_page(env, await new_session(env), bank="linxo_test_bank")
    assert status == 200
    for label in ("Linxo test bank", "Connect my current accounts",
                  "I do not have a current account"):
        assert label in text


async def test_redirect_url_alias_and_expected_account_type(env: Env) -> None:
    session_id = await new_session(env)
    query = {"session_id": session_id, "redirect_url": REDIRECT, "bank": "linxo_test_bank",
             "expected_account_types": "PAYMENT", "countries": "FR,BE"}
    async with env.http.get(env.page_url.with_query(query)) as resp:
        assert resp.status == 200
        (form,) = parse_page(await resp.text()).forms
    assert form.fields["redirect_uri"] == REDIRECT
    assert "redirect_url" not in form.fields
    assert form.fields["channel"] == "REDIRECT"  # PAYMENT pre-selects the PSD2 path
    assert form.fields["countries"] == "FR,BE"


async def test_page_escapes_what_it_echoes(env: Env) -> None:
    session_id = await new_session(env)
    evil = 'https://app.example/cb?x="><script>alert(1)</script>'
    status, text = await get_page(env, session_id, redirect_uri=evil, bank="linxo_test_bank",
                                  locale="<b>")
    assert status == 200
    assert "<script>" not in text
    assert "<b>" not in text
    (form,) = parse_page(text).forms
    assert form.fields["redirect_uri"] == evil
    assert form.fields["locale"] == "<b>"


@pytest.mark.parametrize("params", [
    {"redirect_uri": None},
    {"redirect_uri": "/callback"},
    {"redirect_uri": "ftp://app.example/callback"},
    {"redirect_uri": "https://"},
    {"cancel_url": "cancel.html"},
    {"auto_sync": "maybe"},
    {"expected_account_type": "CARDS"},
    {"bank": "some_other_bank"},
])
async def test_page_bad_parameters(env: Env, params: dict[str, str | None]) -> None:
    session_id = await new_session(env)
    query = {"session_id": session_id, "redirect_uri": REDIRECT, **params}
    url = env.page_url.with_query({k: v for k, v in query.items() if v is not None})
    async with env.http.get(url) as resp:
        assert resp.status == 400
        assert resp.content_type == "text/html"


@pytest.mark.parametrize("session_id", [None, "", "not a session!"])
async def test_page_missing_or_malformed_session(env: Env, session_id: str | None) -> None:
    status, text = await get_page(env, session_id)
    assert status == 400
    assert "session_id" in text


async def test_page_unknown_session(env: Env) -> None:
    status, _ = await get_page(env, "x" * 32)
    assert status == 404


async def test_session_expires_after_an_hour_and_is_reusable(env: Env) -> None:
    session_id = await new_session(env)
    env.clock.now += 3599
    first = success_id((await connect(env, session_id))[2])
    second = success_id((await connect(env, session_id))[2])
    assert first != second
    form = await bank_form(env, session_id)
    env.clock.now += 1
    assert (await get_page(env, session_id))[0] == 404
    status, text, location = await post_form(env, {**form.fields, "login": "dev",
                                                   "password": "dev"})
    assert (status, location) == (404, None)
    assert "expired" in text


# ----------------------------------------------------------------------- add_connection
async def test_full_flow_through_the_pages(env: Env) -> None:
    async with env.http.post(env.url("/embed/widget_session"), data={
            "client_id": "app", "client_secret": "app-secret",
            "access_token": env.user_token.value}) as resp:
        link = URL((await resp.json())["_links"]["add_connection"])
    async with env.http.get(link.extend_query(redirect_uri=REDIRECT)) as resp:
        (bank_link,) = parse_page(await resp.text()).links
    async with env.http.get(bank_link) as resp:
        (form,) = parse_page(await resp.text()).forms
    fields = {**form.fields, "login": "dev", "password": "dev"}
    async with env.http.post(form.action, data=fields, allow_redirects=False) as resp:
        assert resp.status == 302
        connection_id = success_id(URL(resp.headers["Location"]))
    assert connection_id in env.state.data(env.user.id).connections


@pytest.mark.parametrize("channel", ["EMBEDDED", "REDIRECT"])
async def test_connect_default_bank(env: Env, channel: str) -> None:
    status, _, location = await connect(env, channel=channel)
    assert status == 302
    connection_id = success_id(location)
    data = env.state.data(env.user.id)
    connection = data.connections[connection_id]
    assert connection.user_id == env.user.id
    assert connection.auto_sync is True
    assert connection.consent_per_account is False
    assert connection.status == "SUCCESS"
    modes = {c.mode: c.status for c in connection.channels}
    assert modes[channel] == "SUCCESS"
    accounts = [a for a in data.accounts.values() if a.connection_id == connection_id]
    assert accounts
    assert all(a.last_channel_definition_id is not None
               and a.last_channel_definition_id.endswith(
                   "01" if channel == "REDIRECT" else "00") for a in accounts)
    assert any(data.transactions[a.id] for a in accounts)
    if channel == "REDIRECT":
        assert {a.type for a in accounts} <= PAYMENT_TYPES


async def test_connect_without_channel_uses_the_page_default(env: Env) -> None:
    session_id = await new_session(env)
    form = await bank_form(env, session_id)
    fields = {k: v for k, v in form.fields.items() if k != "channel"}
    _, _, location = await post_form(env, {**fields, "login": "dev", "password": "dev"})
    connection = env.state.data(env.user.id).connections[success_id(location)]
    assert {c.mode: c.status for c in connection.channels}[form.fields["channel"]] == "SUCCESS"


async def test_connect_passes_widget_options(env: Env) -> None:
    _, _, location = await connect(env, query={"auto_sync": "false",
                                               "consent_per_account": "true"})
    connection = env.state.data(env.user.id).connections[success_id(location)]
    assert connection.auto_sync is False
    assert connection.consent_per_account is True


@pytest.mark.parametrize(("channel", "types"), [
    ("EMBEDDED", {"CHECKINGS", "CREDIT_CARD", "SAVINGS"}),
    ("REDIRECT", {"CHECKINGS", "CREDIT_CARD"}),
])
async def test_connect_with_bundled_config_name(env: Env, channel: str, types: set[str]) -> None:
    name = "fr/hermione_granger"
    assert name in bundled_testbanks()
    bank = load_testbank(name)
    _, _, location = await connect(env, channel=channel, config_name=name,
                                   login=bank.login, password=bank.password)
    connection_id = success_id(location)
    data = env.state.data(env.user.id)
    assert data.connections[connection_id].owner_name == bank.owner
    accounts = [a for a in data.accounts.values() if a.connection_id == connection_id]
    assert sorted(a.type for a in accounts) == sorted(types)
    assert all(data.transactions[a.id] for a in accounts if a.type == "CHECKINGS")


@pytest.mark.parametrize("channel", ["EMBEDDED", "REDIRECT"])
async def test_connect_with_inline_config(env: Env, channel: str) -> None:
    _, _, location = await connect(env, channel=channel, config=INLINE_BANK,
                                   login="alice", password="s3cret")
    connection_id = success_id(location)
    data = env.state.data(env.user.id)
    assert data.connections[connection_id].owner_name == "ALICE LIDDELL"
    accounts = {a.name: a for a in data.accounts.values() if a.connection_id == connection_id}
    expected = {"Compte courant"} if channel == "REDIRECT" else {"Compte courant", "Livret A"}
    assert set(accounts) == expected
    checking = accounts["Compte courant"]
    assert (checking.type, checking.balance_cents) == ("CHECKINGS", 25050)
    labels = {t.label: t.amount_cents for t in data.transactions[checking.id]}
    assert labels == {"CAFE DU COIN": -1230, "VIREMENT RECU": 10000}


async def test_inline_config_that_does_not_parse(env: Env) -> None:
    bad = "TRANSACTION|-1|01/01/24|before any account\n"
    status, text, location = await connect(env, config=bad)
    assert (status, location) == (400, None)
    (form,) = parse_page(text).forms
    assert form.fields["config"] == bad  # shown again for correction
    assert "not valid" in text
    assert not env.state.data(env.user.id).connections


@pytest.mark.parametrize("name", ["no/such_bank", "../../../etc/passwd"])
async def test_unknown_config_name(env: Env, name: str) -> None:
    status, _, location = await connect(env, config_name=name)
    assert (status, location) == (400, None)
    assert not env.state.data(env.user.id).connections


async def test_wrong_credentials_three_times(env: Env) -> None:
    session_id = await new_session(env)
    form = await bank_form(env, session_id)
    for attempt in (1, 2):
        status, text, location = await post_form(
            env, {**form.fields, "login": "dev", "password": "nope", "action": "connect"})
        assert (status, location) == (200, None)
        assert "Wrong login or password" in text
        (form,) = parse_page(text).forms
        assert form.fields["attempt"] == str(attempt)
        assert form.fields["login"] == "dev"
        assert form.fields["password"] == ""
    status, _, location = await post_form(
        env, {**form.fields, "login": "harry", "password": "dev", "action": "connect"})
    assert status == 302
    assert_failure(location, "auth_failed")
    assert not env.state.data(env.user.id).connections


async def test_right_credentials_after_a_wrong_attempt(env: Env) -> None:
    form = await bank_form(env, await new_session(env))
    _, text, _ = await post_form(env, {**form.fields, "login": "x", "password": "y"})
    (form,) = parse_page(text).forms
    _, _, location = await post_form(env, {**form.fields, "login": "dev", "password": "dev"})
    success_id(location)


async def test_cancel_without_cancel_url(env: Env) -> None:
    status, _, location = await connect(env, action="cancel")
    assert status == 302
    assert_failure(location, "cancelled")
    assert not env.state.data(env.user.id).connections


async def test_cancel_with_cancel_url(env: Env) -> None:
    cancel = "https://app.example/cancelled?from=widget"
    status, _, location = await connect(env, query={"cancel_url": cancel}, action="cancel")
    assert status == 302
    assert str(location) == cancel


async def test_cancel_from_the_bank_list(env: Env) -> None:
    _, text = await get_page(env, await new_session(env))
    (form,) = parse_page(text).forms
    status, _, location = await post_form(env, {**form.fields, "action": "cancel"})
    assert status == 302
    assert_failure(location, "cancelled")


async def test_redirect_uri_with_a_query(env: Env) -> None:
    redirect = "https://app.example/done?state=abc%20def&lang=fr"
    _, _, location = await connect(env, redirect=redirect)
    assert location is not None
    assert str(location).startswith(redirect + "&status=success&result=created&connection_id=")
    assert location.query["state"] == "abc def"
    success_id(location, redirect)


async def test_server_error_while_applying(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(_widget, "apply_testbank", boom)
    status, _, location = await connect(env)
    assert status == 302
    assert_failure(location, "server_error")


async def test_post_revalidates_parameters(env: Env) -> None:
    form = await bank_form(env, await new_session(env))
    base = {**form.fields, "login": "dev", "password": "dev"}
    for fields, expected in [
        ({**base, "redirect_uri": "callback"}, 400),
        ({k: v for k, v in base.items() if k != "redirect_uri"}, 400),
        ({k: v for k, v in base.items() if k != "session_id"}, 400),
        ({**base, "session_id": "y" * 32}, 404),
        ({**base, "channel": "TELEPATHY"}, 400),
    ]:
        status, _, location = await post_form(env, fields)
        assert (status, location) == (expected, None), fields
    assert not env.state.data(env.user.id).connections
