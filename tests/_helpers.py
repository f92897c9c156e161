"""Helpers shared by the tests: a client factory, the emulator's request counters,
ground-truth readers, the widget-page parser and a fake clock. One home each, so a test
file reads as statements of behaviour."""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import attrs
from aiohttp import web
from aiohttp.test_utils import TestServer

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox, SandboxUser, UserData
from oxlin_async.testing._records import Transaction as Record

#: (user key, transaction id) -> (account id, amount)
Truth = dict[tuple[str, str], tuple[str, Decimal]]


def amount_of(record: Record) -> Decimal:
    return Decimal(record.amount_cents).scaleb(-2)


def records(box: OxlinSandbox, keep: Callable[[Record], bool] = lambda r: True
            ) -> dict[str, list[Record]]:
    """Each seeded user's transactions (that `keep` accepts), by e-mail."""
    return {user.email: [t for t in box.state.data(int(user.id)).all_transactions() if keep(t)]
            for user in box.users}


def truth(box: OxlinSandbox, keep: Callable[[Record], bool] = lambda r: True,
          only: Iterable[str] | None = None) -> Truth:
    wanted = None if only is None else set(only)
    return {(email, str(t.id)): (str(t.account_id), amount_of(t))
            for email, txs in records(box, keep).items()
            if wanted is None or email in wanted for t in txs}


def assert_exact(got: Truth, want: Truth) -> None:
    """Same (user, id) pairs, same accounts and amounts: nothing lost, added or altered."""
    assert len(got) == len(want)
    missing, extra = want.keys() - got.keys(), got.keys() - want.keys()
    assert not missing and not extra, (f"{len(missing)} missing, e.g. {sorted(missing)[:3]}; "
                                       f"{len(extra)} extra, e.g. {sorted(extra)[:3]}")
    wrong = [k for k in want if got[k] != want[k]]
    assert not wrong, [(k, got[k], want[k]) for k in wrong[:5]]
    assert all(isinstance(amount, Decimal) for _, amount in got.values())


# -- the SDK against the emulator ---------------------------------------------------------
#: Routes as the emulator's counters name them.
ME = "GET /api/v2.1/users/me"
TOKEN = "POST /auth/token"
TX = "GET /api/v2.1/transactions"
ACCOUNTS = "GET /api/v2.1/accounts"
POST_USERS = "POST /api/v2.1/users"
WIDGET = "POST /embed/v2.1/widget/widget_session"
#: Tiny backoffs keep fault tests fast; the policy itself is what is under test.
FAST = ox.RetryPolicy(initial_backoff=0.001, max_backoff=0.005)
PARIS = ZoneInfo("Europe/Paris")


def new_client(sandbox: OxlinSandbox, **kwargs: Any) -> ox.OxlinClient:
    kwargs.setdefault("retry", FAST)
    return ox.OxlinClient(sandbox.client_id, sandbox.client_secret,
                          environment=sandbox.environment, **kwargs)


def requests(sandbox: OxlinSandbox, route: str) -> int:
    """How many requests the emulator received on `route` (e.g. `TX`)."""
    return sandbox.state.counters.requests[route]


def total_requests(sandbox: OxlinSandbox) -> int:
    return sum(sandbox.state.counters.requests.values())


def grants(sandbox: OxlinSandbox) -> int:
    """Tokens the emulator granted, of every grant type."""
    return sum(sandbox.state.counters.grants.values())


def user_data(sandbox: OxlinSandbox, index: int) -> UserData:
    """The ground truth of the `index`-th seeded user."""
    return sandbox.state.data(int(sandbox.users[index].id))


def truth_ids(sandbox: OxlinSandbox, user: SandboxUser) -> list[str]:
    """The ids of every transaction of `user`, sorted."""
    return sorted(str(t.id) for t in sandbox.state.data(int(user.id)).all_transactions())


def paris_day(ts: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts, PARIS).date()


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def client_of(routes: Iterable[web.RouteDef], **kwargs: Any
                    ) -> AsyncIterator[ox.OxlinClient]:
    """A client of a tiny server of the test's own (auth under /auth, the API under
    /v2.1), for answers the emulator never sends. `kwargs` go to `OxlinClient`."""
    app = web.Application()
    app.add_routes(list(routes))
    server = TestServer(app)
    await server.start_server()
    try:
        env = ox.Environment(auth_url=str(server.make_url("/auth")),
                             api_url=str(server.make_url("/v2.1")),
                             embed_url=str(server.make_url("/embed/v2.1")))
        async with ox.OxlinClient("id", "secret", environment=env, **kwargs) as client:
            yield client
    finally:
        await server.close()


class SentHeaders:
    """The headers of each API request as written on the wire (an aiohttp trace)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, str]]] = []

    def config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(self._sent)
        return trace

    async def _sent(self, session: Any, ctx: Any, params: Any) -> None:
        self.sent.append((params.url.path, dict(params.headers)))


class FakeClock:
    """A clock that moves only when the test moves it (`clock.now += 10`)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- the widget's HTML pages, read as a browser would -------------------------------------
@attrs.define
class Form:
    action: str
    method: str
    #: what a browser would send (hidden and text inputs, checked radios, selected options)
    fields: dict[str, str] = attrs.Factory(dict)
    #: every input name, with its possible values for radios and selects
    choices: dict[str, list[str]] = attrs.Factory(dict)


class PageParser(HTMLParser):
    """Forms and links of a page, enough to drive it as a browser would."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.links: list[str] = []
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs_: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs_}
        form = self.forms[-1] if self.forms else None
        if tag == "a":
            self.links.append(a["href"])
        elif tag == "form":
            self.forms.append(Form(action=a["action"], method=a.get("method", "get")))
        elif form is None:
            return
        elif tag == "input":
            name, kind = a["name"], a.get("type", "text")
            form.choices.setdefault(name, [])
            if kind == "radio":
                form.choices[name].append(a["value"])
                if "checked" in a:
                    form.fields[name] = a["value"]
            else:
                form.fields[name] = a.get("value", "")
        elif tag == "select":
            self._select = a["name"]
            form.choices[a["name"]] = []
        elif tag == "option" and self._select is not None:
            form.choices[self._select].append(a["value"])
            if "selected" in a or self._select not in form.fields:
                form.fields[self._select] = a["value"]
        elif tag == "textarea":
            self._textarea = a["name"]
            form.choices[a["name"]] = []
            form.fields[a["name"]] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.forms[-1].fields[self._textarea] += data


def parse_page(text: str) -> PageParser:
    parser = PageParser()
    parser.feed(text)
    parser.close()
    return parser
