"""The embed host: widget sessions and the add-connection pages (docs/oxlin-api §12, §13).

Routes carry the emulator's ``/embed`` prefix: the embed API is ``/embed/v2.1`` and the
embed origin (the browser pages) is ``/embed``. The pages are plain HTML forms posted back
form-encoded, so an HTTP client can drive them as well as a browser:

1. ``GET /embed/widget/add_connection?session_id=...&redirect_uri=...``: the bank list;
2. the same with ``&bank=linxo_test_bank``: the Linxo test bank form;
3. ``POST /embed/widget/add_connection``: checks the credentials, creates the connection
   and answers 302 to ``redirect_uri`` with the completion parameters (§12.3).
"""

from __future__ import annotations

import html
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any

import attrs
from aiohttp import web
from yarl import URL

from ._http import json_error, json_response, read_body
from ._state import EmulatorState, WidgetSession
from ._testbank import (
    DEFAULT_TESTBANK,
    TestBank,
    TestBankError,
    apply_testbank,
    bundled_testbanks,
    load_testbank,
    parse_testbank,
)

log = logging.getLogger(__name__)

SESSION_LIFETIME = 3600
#: the flow fails with ``auth_failed`` at this many wrong logins in a row
MAX_ATTEMPTS = 3
TEST_BANK_ID = "linxo_test_bank"
TEST_BANK_NAME = "Linxo test bank"
CHANNELS = {"REDIRECT": "Connect my current accounts",
            "EMBEDDED": "I do not have a current account"}

_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_ACCOUNT_TYPES = ("PAYMENT", "OTHER", "ALL")
_BASIC = {"WWW-Authenticate": 'Basic realm="oxlin"'}
_BEARER = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
#: form inputs and step markers: never passed on as hidden parameters
_INPUTS = frozenset({"login", "password", "config", "config_name", "config_url", "channel",
                     "action", "attempt", "bank", "redirect_url"})


def widget_routes(state: EmulatorState) -> list[web.RouteDef]:
    """The embed host's routes, with their full paths under ``/embed``."""
    widget = _Widget(state)
    return [
        web.post("/embed/v2.1/widget/widget_session", widget.create_session,
                 name="create_widget_session"),
        web.post("/embed/widget_session", widget.create_session,
                 name="create_widget_session_short"),
        web.get("/embed/widget/add_connection", widget.page, name="get_add_connection_page"),
        web.post("/embed/widget/add_connection", widget.submit, name="post_add_connection"),
    ]


# --- parameters ---------------------------------------------------------------------------


class _PageError(Exception):
    """A parameter problem, answered with an HTML error page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> web.Response:
        title = "Bad request" if self.status == 400 else "Session not found"
        return _html(title, f"<p>{_esc(self.message)}</p>", self.status)


@attrs.frozen
class _Flow:
    """The checked widget parameters of one page view or form post."""

    session: WidgetSession
    redirect_uri: URL
    cancel_url: URL | None
    auto_sync: bool
    consent_per_account: bool
    default_channel: str
    #: every parameter to pass on to the next step (``redirect_url`` spelt ``redirect_uri``)
    carried: dict[str, str]


def _http_url(params: Mapping[str, str], name: str) -> URL | None:
    value = params.get(name)
    if value is None:
        return None
    try:
        url = URL(value)
    except ValueError:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise _PageError(400, f"{name} must be an absolute http(s) URL")
    return url


def _boolean(params: Mapping[str, str], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _PageError(400, f"{name} must be true or false")


def _texts(body: Mapping[str, Any]) -> dict[str, str]:
    """A form or JSON body as strings (JSON booleans as ``true``/``false``)."""
    out: dict[str, str] = {}
    for key, value in body.items():
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, (str, int, float)):
            out[key] = str(value)
    return out


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


# --- HTML -------------------------------------------------------------------------------


def _html(title: str, body: str, status: int = 200) -> web.Response:
    text = ('<!DOCTYPE html>\n<html lang="en">\n<head><meta charset="utf-8">'
            f"<title>{_esc(title)}</title></head>\n<body>\n<h1>{_esc(title)}</h1>\n"
            f"{body}\n</body>\n</html>\n")
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def _hidden(fields: Mapping[str, str]) -> str:
    return "".join(f'<input type="hidden" name="{_esc(k)}" value="{_esc(v)}">\n'
                   for k, v in fields.items())


def _bank_list(action: URL, flow: _Flow) -> web.Response:
    link = action.with_query({**flow.carried, "bank": TEST_BANK_ID})
    body = (
        "<p>Choose your bank.</p>\n"
        f'<ul>\n<li><a href="{_esc(link)}">{_esc(TEST_BANK_NAME)}</a></li>\n</ul>\n'
        f'<form method="post" action="{_esc(action)}">\n{_hidden(flow.carried)}'
        '<button type="submit" name="action" value="cancel">Cancel</button>\n</form>'
    )
    return _html("Add a bank connection", body)


def _bank_form(action: URL, flow: _Flow, values: Mapping[str, str], *,
               error: str | None = None, status: int = 200) -> web.Response:
    """The Linxo test bank form; `values` refills what the user typed (not the password)."""
    chosen = values.get("channel") or flow.default_channel
    radios = "".join(
        f'<p><label><input type="radio" name="channel" value="{mode}"'
        f'{" checked" if mode == chosen else ""}> {_esc(label)}</label></p>\n'
        for mode, label in CHANNELS.items())
    chosen_name = values.get("config_name", "")
    options = "".join(
        f'<option value="{_esc(name)}"{" selected" if name == chosen_name else ""}>'
        f"{_esc(name or '(default)')}</option>\n"
        for name in ["", *bundled_testbanks()])
    body = (
        (f'<p class="error" role="alert">{_esc(error)}</p>\n' if error else "")
        + f'<form method="post" action="{_esc(action)}">\n'
        # `attempt` only shows the server's count: a posted value is ignored.
        + _hidden({**flow.carried, "attempt": str(flow.session.failed_logins)})
        + f"<fieldset><legend>Accounts to connect</legend>\n{radios}</fieldset>\n"
        + '<p><label>Login <input name="login" autocomplete="username" '
        + f'value="{_esc(values.get("login", ""))}"></label></p>\n'
        + '<p><label>Password <input type="password" name="password" '
        + 'autocomplete="current-password"></label></p>\n'
        + f'<p><label>Bundled test-bank file (default: {_esc(DEFAULT_TESTBANK)}) '
        + f'<select name="config_name">\n{options}</select></label></p>\n'
        + "<p><label>Or your own test-bank file<br>"
        + '<textarea name="config" rows="8" cols="80">'
        + f'{_esc(values.get("config", ""))}</textarea></label></p>\n'
        + '<p><button type="submit" name="action" value="connect">Connect</button>\n'
        + '<button type="submit" name="action" value="cancel">Cancel</button></p>\n</form>'
    )
    return _html(TEST_BANK_NAME, body, status)


def _redirect(url: URL) -> web.Response:
    return web.Response(status=302, headers={"Location": str(url)})


# --- handlers ---------------------------------------------------------------------------


class _Widget:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    # POST /embed/v2.1/widget/widget_session ---------------------------------------------
    async def create_session(self, request: web.Request) -> web.Response:
        try:
            body = await read_body(request)
        except ValueError as exc:
            return json_error(400, "invalid_request", str(exc))
        fields: dict[str, str] = {}
        for name in ("client_id", "client_secret", "access_token"):
            value = body.get(name)
            if value is None or value == "":
                return json_error(400, "invalid_request", f"Missing parameter {name}")
            if not isinstance(value, str):
                return json_error(400, "invalid_request", f"Parameter {name} must be a string")
            fields[name] = value
        client = self.state.clients.get(fields["client_id"])
        if client is None or not secrets.compare_digest(
                client.client_secret.encode(), fields["client_secret"].encode()):
            return json_error(401, "invalid_client", "Client authentication failed", _BASIC)
        token = self.state.valid_token(fields["access_token"])
        if (token is None or token.user_id is None or token.client_id != client.client_id
                or token.user_id not in self.state.users):
            return json_error(401, "invalid_token",
                              "The user access token is invalid or expired", _BEARER)
        self._purge()
        session_id = secrets.token_urlsafe(24)  # 32 URL-safe characters
        self.state.widget_sessions[session_id] = WidgetSession(
            session_id=session_id, client_id=client.client_id, user_id=token.user_id,
            expires_at=self.state.clock() + SESSION_LIFETIME)
        link = self._page_url(request).with_query(session_id=session_id)
        return json_response({"session_id": session_id,
                              "_links": {"add_connection": str(link)}})

    def _page_url(self, request: web.Request) -> URL:
        """The add-connection page, on the emulator's configured base URL."""
        base = URL(self.state.base_url) if self.state.base_url else _own_origin(request)
        return base.with_path("/embed/widget/add_connection")

    def _purge(self) -> None:
        now = self.state.clock()
        sessions = self.state.widget_sessions
        for key in [k for k, s in sessions.items() if s.expires_at <= now]:
            del sessions[key]

    def _flow(self, params: Mapping[str, str]) -> _Flow:
        session_id = params.get("session_id")
        if not session_id:
            raise _PageError(400, "Missing parameter session_id")
        if not _SESSION_ID.fullmatch(session_id):
            raise _PageError(400, "Malformed session_id")
        redirect_name = "redirect_uri" if "redirect_uri" in params else "redirect_url"
        redirect_uri = _http_url(params, redirect_name)
        if redirect_uri is None:
            raise _PageError(400, "Missing parameter redirect_uri")
        cancel_url = _http_url(params, "cancel_url")
        auto_sync = _boolean(params, "auto_sync", True)
        consent_per_account = _boolean(params, "consent_per_account", False)
        expected = (params.get("expected_account_type")
                    or params.get("expected_account_types") or "ALL").upper()
        if expected not in _ACCOUNT_TYPES:
            raise _PageError(400, "expected_account_type must be PAYMENT, OTHER or ALL")
        session = self.state.widget_sessions.get(session_id)
        if session is None or session.expires_at <= self.state.clock():
            self.state.widget_sessions.pop(session_id, None)
            raise _PageError(404, "Unknown or expired widget session")
        carried = {k: v for k, v in params.items() if k not in _INPUTS}
        carried["redirect_uri"] = params[redirect_name]
        return _Flow(session=session, redirect_uri=redirect_uri, cancel_url=cancel_url,
                     auto_sync=auto_sync, consent_per_account=consent_per_account,
                     default_channel="REDIRECT" if expected == "PAYMENT" else "EMBEDDED",
                     carried=carried)

    # GET /embed/widget/add_connection ---------------------------------------------------
    async def page(self, request: web.Request) -> web.Response:
        params = {key: request.query[key] for key in request.query}  # first of repeats
        try:
            flow = self._flow(params)
        except _PageError as exc:
            return exc.response()
        bank = params.get("bank")
        if not bank:
            return _bank_list(self._page_url(request), flow)
        if bank != TEST_BANK_ID:
            return _PageError(400, f"Unknown bank {bank}").response()
        return _bank_form(self._page_url(request), flow, params)

    # POST /embed/widget/add_connection --------------------------------------------------
    async def submit(self, request: web.Request) -> web.Response:
        try:
            params = _texts(await read_body(request))
        except ValueError as exc:
            return _PageError(400, str(exc)).response()
        try:
            flow = self._flow(params)
        except _PageError as exc:
            return exc.response()
        if params.get("action") == "cancel":
            if flow.cancel_url is not None:
                return _redirect(flow.cancel_url)
            return _redirect(flow.redirect_uri.extend_query(status="failure", error="cancelled"))

        action = self._page_url(request)
        session = flow.session
        if session.failed_logins >= MAX_ATTEMPTS:  # locked out: the state is ours
            return _redirect(flow.redirect_uri.extend_query(status="failure",
                                                             error="auth_failed"))
        channel = params.get("channel") or flow.default_channel
        if channel not in CHANNELS:
            return _bank_form(action, flow, params, error="Choose the accounts to connect.",
                              status=400)
        try:
            bank = self._load_bank(params)
        except (TestBankError, _PageError) as exc:
            return _bank_form(action, flow, params, status=400,
                              error=f"The test-bank file is not valid: {exc}")
        if not (_same(params.get("login"), bank.login)
                and _same(params.get("password"), bank.password)):
            session.failed_logins += 1
            if session.failed_logins >= MAX_ATTEMPTS:
                return _redirect(
                    flow.redirect_uri.extend_query(status="failure", error="auth_failed"))
            left = MAX_ATTEMPTS - session.failed_logins
            return _bank_form(action, flow, params,
                              error=f"Wrong login or password ({left} attempt(s) left).")
        session.failed_logins = 0
        try:
            connection = apply_testbank(
                self.state, flow.session.user_id, bank, channel=channel,
                auto_sync=flow.auto_sync, consent_per_account=flow.consent_per_account)
        except Exception:
            log.exception("the Linxo test bank could not create the connection")
            return _redirect(flow.redirect_uri.extend_query(status="failure",
                                                             error="server_error"))
        return _redirect(flow.redirect_uri.extend_query(
            status="success", result="created", connection_id=str(connection.id)))

    @staticmethod
    def _load_bank(params: Mapping[str, str]) -> TestBank:
        config = params.get("config", "")
        if config.strip():
            return parse_testbank(config, source="<widget config>")
        if params.get("config_url"):
            raise _PageError(400, "the emulator cannot fetch config_url; paste the file "
                                  "into config instead")
        name = params.get("config_name", "").removesuffix(".txt") or DEFAULT_TESTBANK
        if name not in bundled_testbanks():  # never a path on the server
            raise _PageError(400, f"unknown bundled test bank {name!r}")
        return load_testbank(name)


def _same(given: str | None, expected: str) -> bool:
    """A credential check that takes the same time however much of it matches."""
    return given is not None and secrets.compare_digest(given.encode(), expected.encode())


def _own_origin(request: web.Request) -> URL:
    """The address this server listens on, for an app run without a sandbox; never the
    request's ``Host``, which the client chooses."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host = str(sockname[0])
        return URL.build(scheme="http", host=host, port=int(sockname[1]))
    return URL("http://127.0.0.1")
