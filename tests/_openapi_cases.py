"""The scenario registry of the OpenAPI tests: a context that drives the emulator and checks
each exchange against the spec, and the `case` helpers that register scenarios."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from _openapi import (
    SpecMapper,
    SpecRequest,
    SpecResponse,
    check_request,
    check_response,
    find_operation,
)
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
        """Run the emulator's widget form (docs/oxlin-api §12.4) with the default test bank; the
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
