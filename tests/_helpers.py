"""Helpers shared by the tests: a client factory, the emulator's request counters,
ground-truth readers, the widget-page parser and a fake clock. One home each, so a test
file reads as statements of behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import oxlin_async as ox
from oxlin_async import cli
from oxlin_async._export import COLUMNS
from oxlin_async.bulk import Batch, BulkRun, BulkUser
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


# -- the export row (oxlin_async._rows.ROW) ----------------------------------------------
def _instant(ts: int | None) -> dt.datetime | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def _day(ts: int | None) -> dt.date | None:
    return None if ts is None else paris_day(ts)


def row_truth(box: OxlinSandbox, keep: Callable[[Record], bool] = lambda r: True,
              only_users: Iterable[str] | None = None
              ) -> dict[tuple[str, str], dict[str, Any]]:
    """Every seeded transaction as the export row should hold it, by (user key, id): the
    owning user's id, the account's connection and type, the calendar days (Paris), the
    exact amount, the category's name, the instants in UTC."""
    from oxlin_async.testing._records import CATEGORIES

    names = {c[0]: c[1] for c in CATEGORIES}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    wanted = None if only_users is None else set(only_users)
    for user in box.users:
        if wanted is not None and user.email not in wanted:
            continue
        data = box.state.data(int(user.id))
        for t in data.all_transactions():
            if not keep(t):
                continue
            account = data.accounts[t.account_id]
            out[(user.email, str(t.id))] = {
                "id": str(t.id), "user": user.email, "user_id": str(user.id),
                "connection_id": str(account.connection_id), "account_id": str(t.account_id),
                "account_type": account.type, "date": paris_day(t.date),
                "value_date": _day(t.value_date), "booking_date": _day(t.booking_date),
                "amount": amount_of(t), "currency": t.currency, "label": t.label,
                "category_id": t.category_id, "category": names.get(t.category_id),
                "type": t.type, "status": t.status, "origin": t.origin,
                "import_date": _instant(t.import_date),
                "last_update_date": _instant(t.last_update_date), "notes": t.notes}
    return out


def row_values(row: dict[str, Any]) -> dict[str, Any]:
    """A row read back from any format, as Python values of its column's kind: text,
    `Decimal`, `date`, aware `datetime` (an empty CSV cell or SQL NULL is None). A float
    amount, a naive instant or an instant where a day belongs fails here."""
    from oxlin_async._rows import ROW, Kind

    out: dict[str, Any] = {}
    for column in ROW:
        value = row[column.name]
        if value is None or value == "":
            out[column.name] = None
        elif column.kind is Kind.DECIMAL:
            assert isinstance(value, (str, Decimal)), (column.name, value)
            out[column.name] = Decimal(value)
        elif column.kind is Kind.DAY:
            if isinstance(value, str):
                assert len(value) == 10, value  # YYYY-MM-DD, not an instant
                value = dt.date.fromisoformat(value)
            assert type(value) is dt.date, (column.name, value)
            out[column.name] = value
        elif column.kind is Kind.INSTANT:
            if isinstance(value, str):
                value = dt.datetime.fromisoformat(value)
            assert isinstance(value, dt.datetime) and value.utcoffset() is not None, value
            out[column.name] = value
        else:
            assert isinstance(value, str), (column.name, value)
            out[column.name] = value
    return out


def assert_rows(rows: Iterable[dict[str, Any]], want: dict[tuple[str, str], dict[str, Any]]
                ) -> None:
    """Every row field equal to the truth (`row_truth`), each transaction exactly once."""
    got: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        values = row_values(row)
        key = (values["user"], values["id"])
        assert key not in got, f"exported twice: {key}"
        got[key] = values
    missing, extra = want.keys() - got.keys(), got.keys() - want.keys()
    assert not missing and not extra, (f"{len(missing)} missing, e.g. {sorted(missing)[:3]}; "
                                       f"{len(extra)} extra, e.g. {sorted(extra)[:3]}")
    wrong = [(k, name, got[k][name], want[k][name]) for k in want for name in want[k]
             if got[k][name] != want[k][name]]
    assert not wrong, wrong[:5]


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
async def client_of(routes: Iterable[web.RouteDef], *, client_secret: str = "secret",
                    **kwargs: Any) -> AsyncIterator[ox.OxlinClient]:
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
        async with ox.OxlinClient("id", client_secret, environment=env, **kwargs) as client:
            yield client
    finally:
        await server.close()


@attrs.frozen
class Proxy:
    """A recording HTTP proxy in front of a sandbox: the query of every GET
    /transactions that reaches the emulator."""

    environment: ox.Environment
    queries: list[dict[str, str]]


@contextlib.asynccontextmanager
async def recording_proxy(sandbox: OxlinSandbox) -> AsyncIterator[Proxy]:
    """A `Proxy` in front of `sandbox`, on a port of its own; point a client at its
    `environment` (the emulator still counts every request)."""
    queries: list[dict[str, str]] = []
    kept = ("Content-Type", "Retry-After", "WWW-Authenticate", "X-Request-ID")

    async with aiohttp.ClientSession() as http:
        async def forward(request: web.Request) -> web.Response:
            if request.method == "GET" and request.path.endswith("/transactions"):
                queries.append(dict(request.query))
            headers = {k: v for k, v in request.headers.items()
                       if k in ("Authorization", "Content-Type")}
            async with http.request(request.method, sandbox.base_url + request.path_qs,
                                    headers=headers, data=await request.read()) as answer:
                return web.Response(status=answer.status, body=await answer.read(),
                                    headers={k: answer.headers[k] for k in kept
                                             if k in answer.headers})

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        box = sandbox.environment
        base = f"http://127.0.0.1:{port}"
        try:
            yield Proxy(ox.Environment(
                auth_url=str(box.auth_url).replace(sandbox.base_url, base),
                api_url=str(box.api_url).replace(sandbox.base_url, base),
                embed_url=str(box.embed_url).replace(sandbox.base_url, base)), queries)
        finally:
            await runner.cleanup()
async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `condition` (the emulator's counters, say) until it holds."""
    for _ in range(int(timeout / 0.002)):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition never held")


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


@contextlib.contextmanager
def served(box: OxlinSandbox) -> Iterator[Callable[[Callable[[], Any]], Any]]:
    """`box` serving from a thread of its own, for sync tests that run the command line
    (which runs its own event loop) several times against one emulator. Yields `call`:
    ``call(fn)`` runs `fn` on the emulator's loop (to touch its state) and returns its
    result."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def on_loop(fn: Callable[[], Any]) -> Any:
        return fn()

    def call(fn: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(on_loop(fn), loop).result(30)

    asyncio.run_coroutine_threadsafe(box.start(), loop).result(30)
    try:
        yield call
    finally:
        asyncio.run_coroutine_threadsafe(box.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        loop.close()


# -- bulk runs ----------------------------------------------------------------------------
def users_of(box: OxlinSandbox) -> list[BulkUser]:
    return [BulkUser.with_password(u.email, u.password) for u in box.users]


def token_pairs(box: OxlinSandbox) -> dict[str, tuple[str, str]]:
    """Each seeded user's token pair, as an app that signed them in would hold it (`box`
    serving, from another thread: see `served`)."""
    async def sign_in() -> dict[str, tuple[str, str]]:
        pairs = {}
        async with new_client(box) as client:
            for user in box.users:
                token = await client.as_user(user.email, user.password).tokens.get()
                assert token.refresh_token is not None
                pairs[user.email] = (token.access_token, token.refresh_token)
        return pairs
    return asyncio.run(sign_in())


def delivered(batches: Iterable[Batch]) -> Truth:
    """What the batches hold, as a `Truth`; fails on a duplicate or a misfiled row."""
    out: Truth = {}
    for batch in batches:
        assert batch.transactions, "an empty batch"
        for tx in batch.transactions:
            assert tx.account_id == batch.account.id
            key = (batch.user, tx.id)
            assert key not in out, f"delivered twice: {key}"
            out[key] = (tx.account_id, tx.amount)
    return out


async def drain(run: BulkRun) -> list[Batch]:
    return [batch async for batch in run]


# -- the command line -----------------------------------------------------------------------
#: the variables that would send the CLI to a real service instead of the embedded sandbox
ENV_VARS = ("OXLIN_CLIENT_ID", "OXLIN_CLIENT_SECRET")


def population(users: int = 20, seed: int = 1, accounts: int = 3,
               transactions: int = 100) -> OxlinSandbox:
    """The CLI's defaults: 20 users, seed 1, 3 accounts of 100 transactions."""
    return OxlinSandbox(users=users, seed=seed, accounts_per_user=accounts,
                        transactions_per_account=transactions)


def rows_to_truth(rows: Iterable[dict[str, Any]]) -> Truth:
    out: Truth = {}
    for row in rows:
        key = (row["user"], str(row["id"]))
        assert key not in out, f"exported twice: {key}"
        out[key] = (str(row["account_id"]), Decimal(str(row["amount"])))
    return out


def read_jsonl(path: Path) -> Truth:
    with path.open(encoding="utf-8") as f:
        return rows_to_truth(json.loads(line, parse_float=Decimal) for line in f)


def read_csv(path: Path) -> Truth:
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == COLUMNS
        return rows_to_truth(reader)


def run(args: Sequence[str]) -> int:
    """`oxlin-async ARGS` in this process; argparse errors exit, which gives their status."""
    try:
        return cli.main(list(args))
    except SystemExit as exc:
        return int(exc.code or 0)


def report_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *others: str) -> None:
    """A CLI test's start: in `tmp_path`, with no ``OXLIN_*`` variable (nor `others`)
    from the developer's environment choosing credentials or hosts."""
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("OXLIN_")] + list(others):
        monkeypatch.delenv(name, raising=False)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ENV_VARS}


def stop_export_when(args: Sequence[str], cwd: Path, ready: Callable[[], bool], *,
                     sig: signal.Signals = signal.SIGKILL, timeout: float = 60.0
                     ) -> tuple[int, str]:
    """Run ``python -m oxlin_async ARGS`` in `cwd`, send it `sig` once `ready()` holds
    (it must still be running then), and return its exit status and stderr."""
    process = subprocess.Popen([sys.executable, "-m", "oxlin_async", *args], cwd=cwd,
                               env=clean_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert process.poll() is None, "finished before it could be stopped"
            assert time.monotonic() < deadline, "no progress"
            time.sleep(0.005)
        process.send_signal(sig)
        _, err = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, err


def lines_of(path: Path) -> int:
    """Complete lines in `path` so far (0 before it exists)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0
