"""`AsyncPaginator` walks against the emulator: full walks, filters on every page, caps,
resume, first item, concurrency and data changing mid-walk, compared with the ground truth
(`sandbox.state`), with expectations computed here from the raw records (docs/oxlin-api §7-§8)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from _helpers import PARIS, TX, paris_day, requests
from yarl import URL

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox

# ===================================================================== against the emulator


def paris_midnight(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=PARIS).timestamp())


SORT_KEYS: dict[str, Callable[[Any], int]] = {
    "date": lambda r: r.date, "import_date": lambda r: r.import_date,
    "amount": lambda r: r.amount_cents,
}


def server_order(records: Iterable[Any], sort: str | Sequence[str] | None = None) -> list[Any]:
    """docs/oxlin-api §8: default import_date asc then id desc; with `sort`, ties by id asc."""
    if sort is None:
        return sorted(records, key=lambda r: (r.import_date, -r.id))
    fields = sort.split(",") if isinstance(sort, str) else list(sort)

    def key(r: Any) -> tuple[int, ...]:
        parts = [-SORT_KEYS[f[1:]](r) if f.startswith("-") else SORT_KEYS[f](r)
                 for f in fields]
        return (*parts, r.id)

    return sorted(records, key=key)


def ids(txs: Iterable[ox.Transaction]) -> list[int]:
    return [int(t.id) for t in txs]


@pytest.fixture
def seeded(sandbox: OxlinSandbox) -> Any:
    """The first seeded user's ground truth."""
    return sandbox.state.data(int(sandbox.users[0].id))


@pytest.fixture
def bob(client: ox.OxlinClient, sandbox: OxlinSandbox) -> ox.UserClient:
    user = sandbox.users[0]
    return client.as_user(user.email, user.password)


class Wire:
    """Requests on the wire, seen by an aiohttp trace: URLs, concurrency, cancellations."""

    def __init__(self) -> None:
        self.urls: list[URL] = []
        self.in_flight = 0
        self.peak = 0
        self.errors: list[BaseException] = []

    def config(self) -> aiohttp.TraceConfig:
        tc = aiohttp.TraceConfig()
        tc.on_request_start.append(self._start)
        tc.on_request_end.append(self._end)
        tc.on_request_exception.append(self._exception)
        return tc

    def listed(self, path: str = "/transactions") -> list[URL]:
        return [u for u in self.urls if u.path.endswith("/api/v2.1" + path)]

    def reset(self) -> None:
        self.urls.clear()
        self.peak = self.in_flight
        self.errors.clear()

    async def _start(self, session: Any, ctx: Any, params: Any) -> None:
        if params.url.path.startswith("/api/"):
            ctx.counted = True
            self.urls.append(params.url)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    async def _end(self, session: Any, ctx: Any, params: Any) -> None:
        if getattr(ctx, "counted", False):
            self.in_flight -= 1

    async def _exception(self, session: Any, ctx: Any, params: Any) -> None:
        if getattr(ctx, "counted", False):
            self.in_flight -= 1
            self.errors.append(params.exception)


@pytest.fixture
async def wired(sandbox: OxlinSandbox) -> AsyncIterator[tuple[ox.UserClient, Wire]]:
    """The first seeded user through a client whose aiohttp session is traced."""
    wire = Wire()
    async with aiohttp.ClientSession(trace_configs=[wire.config()]) as http, \
            ox.OxlinClient(sandbox.client_id, sandbox.client_secret,
                           environment=sandbox.environment, session=http) as c:
        user = sandbox.users[0]
        yield c.as_user(user.email, user.password), wire


# ------------------------------------------------------------------------------ full walks
@pytest.mark.parametrize("page_size", [1, 7, 100, 500])
async def test_full_walk_is_the_ground_truth_in_server_order(
        sandbox: OxlinSandbox, bob: ox.UserClient, seeded: Any, page_size: int) -> None:
    expected = server_order(seeded.all_transactions())
    assert len(expected) == 300
    before = requests(sandbox, TX)
    got = await bob.transactions.list(page_size=page_size).collect()
    assert ids(got) == [r.id for r in expected]
    made = requests(sandbox, TX) - before
    needed = len(expected) // page_size + 1
    assert needed <= made <= needed + 7  # prefetch=8: at most 7 wasted requests


async def test_pages_concatenate_to_the_walk(bob: ox.UserClient, seeded: Any) -> None:
    account_id = next(iter(seeded.accounts))
    pages = [page async for page in bob.transactions.list(account_id=account_id,
                                                          page_size=30).pages()]
    assert [len(p) for p in pages] == [30, 30, 30, 10]
    expected = server_order(seeded.transactions[account_id])
    assert [int(t.id) for page in pages for t in page] == [r.id for r in expected]


# ------------------------------------------------------------------ filters on every page
def _filter_cases(seeded: Any) -> list[tuple[str, dict[str, Any], Callable[[Any], bool]]]:
    records = list(seeded.all_transactions())
    accounts = seeded.accounts
    days = sorted({paris_day(r.date) for r in records})
    low, high = days[len(days) // 4], days[3 * len(days) // 4]
    imports = sorted({r.import_date for r in records})
    mid_import = imports[len(imports) // 2]
    exact = sorted(r.amount_cents for r in records)[len(records) // 3]
    card = next(a.id for a in accounts.values() if a.type == "CREDIT_CARD")
    checking = next(a.id for a in accounts.values() if a.type == "CHECKINGS")
    utc_moment = dt.datetime.fromtimestamp(paris_midnight(low) + 3 * 3600 + 1, dt.timezone.utc)
    return [
        ("dates are inclusive Paris days",
         {"start_date": low, "end_date": high},
         lambda r: low <= paris_day(r.date) <= high),
        ("aware datetimes bound exactly",
         {"start_date": utc_moment,
          "end_date": dt.datetime.fromtimestamp(paris_midnight(high), PARIS)},
         lambda r: utc_moment.timestamp() <= r.date <= paris_midnight(high)),
        ("signed min_amount",
         {"min_amount": Decimal("-50")}, lambda r: r.amount_cents >= -5000),
        ("signed min and max amounts",
         {"min_amount": Decimal("-50"), "max_amount": "-10.5"},
         lambda r: -5000 <= r.amount_cents <= -1050),
        ("exact amount",
         {"amount": Decimal(exact) / 100}, lambda r: r.amount_cents == exact),
        ("statuses list",
         {"statuses": [ox.TransactionStatus.PENDING, "REJECTED"]},
         lambda r: r.status in ("PENDING", "REJECTED")),
        ("excluded statuses",
         {"excluded_statuses": ["BOOKED", ox.TransactionStatus.PENDING]},
         lambda r: r.status not in ("BOOKED", "PENDING")),
        ("included then excluded",
         {"statuses": ["BOOKED", "PENDING"], "excluded_statuses": "PENDING"},
         lambda r: r.status == "BOOKED"),
        ("account type",
         {"account_type": ox.AccountType.CREDIT_CARD},
         lambda r: accounts[r.account_id].type == "CREDIT_CARD"),
        ("origin", {"origin": "RECURRING"}, lambda r: r.origin == "RECURRING"),
        ("category", {"category_id": "SUPERMARKET"}, lambda r: r.category_id == "SUPERMARKET"),
        ("start_import_date as a Paris day",
         {"start_import_date": paris_day(mid_import)},
         lambda r: r.import_date >= paris_midnight(paris_day(mid_import))),
        ("start_import_date as an exact moment, inclusive",
         {"start_import_date": dt.datetime.fromtimestamp(mid_import, dt.timezone.utc)},
         lambda r: r.import_date >= mid_import),
        ("start_import_date as epoch seconds",
         {"start_import_date": mid_import}, lambda r: r.import_date >= mid_import),
        ("sort by amount descending", {"sort": "-amount"}, lambda r: True),
        ("sort by date then amount descending", {"sort": ["date", "-amount"]},
         lambda r: True),
        ("sort by import date descending, filtered",
         {"sort": "-import_date", "account_id": card, "max_amount": 0},
         lambda r: r.account_id == card and r.amount_cents <= 0),
        ("everything at once",
         {"account_id": str(checking), "start_date": low, "end_date": high,
          "min_amount": -200, "excluded_statuses": "CANCELLED", "origin": "TRANSACTION",
          "sort": "date,-amount"},
         lambda r: (r.account_id == checking and low <= paris_day(r.date) <= high
                    and r.amount_cents >= -20000 and r.status != "CANCELLED"
                    and r.origin == "TRANSACTION")),
    ]


FILTER_CASE_NAMES = [
    "dates", "aware-datetimes", "min-amount", "min-max-amount", "amount", "statuses",
    "excluded", "included-excluded", "account-type", "origin", "category",
    "import-day", "import-moment", "import-epoch", "sort-amount", "sort-date-amount",
    "sort-import-filtered", "everything",
]


@pytest.mark.parametrize("case", range(len(FILTER_CASE_NAMES)), ids=FILTER_CASE_NAMES)
async def test_every_filter_reaches_every_page(
        wired: tuple[ox.UserClient, Wire], sandbox: OxlinSandbox, case: int) -> None:
    user, wire = wired
    seeded = sandbox.state.data(int(sandbox.users[0].id))
    name, kwargs, keep = _filter_cases(seeded)[case]
    expected = server_order([r for r in seeded.all_transactions() if keep(r)],
                            kwargs.get("sort"))
    assert expected, f"{name}: the case selects nothing, pick other bounds"

    got = await user.transactions.list(page_size=7, **kwargs).collect()
    assert ids(got) == [r.id for r in expected], name

    sent = wire.listed()
    assert len(sent) >= len(expected) // 7 + 1
    first = {k: v for k, v in sent[0].query.items() if k not in ("page", "limit")}
    assert first, "no filter was sent"
    for url in sent:
        assert {k: v for k, v in url.query.items() if k not in ("page", "limit")} == first
        assert url.query["limit"] == "7"
    assert sorted(int(u.query["page"]) for u in sent) == list(range(1, len(sent) + 1))


async def test_filter_values_on_the_wire(wired: tuple[ox.UserClient, Wire]) -> None:
    user, wire = wired
    await user.transactions.list(
        start_date=dt.date(2025, 1, 1), end_date=dt.date(2025, 3, 30),
        min_amount=Decimal("-50"), max_amount=Decimal("1E+3"),
        statuses=["BOOKED", "PENDING", "BOOKED"], sort=["date", "-amount"],
        page_size=500).collect()
    (url,) = wire.listed()
    assert dict(url.query) == {
        "start_date": str(paris_midnight(dt.date(2025, 1, 1))),
        # 30 March 2025 is the day Paris moves to summer time: a 23-hour day
        "end_date": str(paris_midnight(dt.date(2025, 3, 31)) - 1),
        "min_amount": "-50", "max_amount": "1000",
        "included_statuses": "BOOKED,PENDING", "sort": "date,-amount",
        "page": "1", "limit": "500",
    }
    assert int(url.query["end_date"]) - int(url.query["start_date"]) == 88 * 86400 + 23 * 3600 - 1


# -------------------------------------------------------------- caps, resume, first item
async def test_max_items_stops_early_with_fewer_requests(
        wired: tuple[ox.UserClient, Wire], sandbox: OxlinSandbox, seeded: Any) -> None:
    user, wire = wired
    expected = [r.id for r in server_order(seeded.all_transactions())]

    before = requests(sandbox, TX)
    full = await user.transactions.list(page_size=10).collect()
    full_requests = requests(sandbox, TX) - before
    assert ids(full) == expected
    assert full_requests >= 31

    wire.reset()
    before = requests(sandbox, TX)
    capped = await user.transactions.list(page_size=10, max_items=25).collect()
    assert ids(capped) == expected[:25]
    assert requests(sandbox, TX) - before == 3
    assert [(u.query["page"], u.query["limit"]) for u in wire.listed()] == \
        [("1", "10"), ("2", "10"), ("5", "5")]

    wire.reset()
    few = await user.transactions.list(max_items=3).collect()  # page_size 500
    assert ids(few) == expected[:3]
    assert [(u.query["page"], u.query["limit"]) for u in wire.listed()] == [("1", "3")]

    before = requests(sandbox, TX)
    assert await user.transactions.list(max_items=0).collect() == []
    assert [t async for t in user.transactions.list(max_items=0)] == []
    assert requests(sandbox, TX) == before


async def test_start_page_resumes(wired: tuple[ox.UserClient, Wire], sandbox: OxlinSandbox,
                                  seeded: Any) -> None:
    user, wire = wired
    expected = [r.id for r in server_order(seeded.all_transactions())]

    resumed = await user.transactions.list(page_size=10, start_page=4).collect()
    assert ids(resumed) == expected[30:]
    assert min(int(u.query["page"]) for u in wire.listed()) == 4

    wire.reset()
    window = await user.transactions.list(page_size=10, start_page=3, max_items=5).collect()
    assert ids(window) == expected[20:25]
    assert [(u.query["page"], u.query["limit"]) for u in wire.listed()] == [("5", "5")]

    before = requests(sandbox, TX)
    assert await user.transactions.list(page_size=100, start_page=4).collect() == []
    assert requests(sandbox, TX) - before == 1


async def test_first(wired: tuple[ox.UserClient, Wire], seeded: Any) -> None:
    user, wire = wired
    expected = server_order(seeded.all_transactions())
    first = await user.transactions.list().first()
    assert first is not None and int(first.id) == expected[0].id
    assert [(u.query["page"], u.query["limit"]) for u in wire.listed()] == [("1", "1")]

    by_amount = await user.transactions.list(sort="-amount").first()
    assert by_amount is not None
    assert int(by_amount.id) == server_order(seeded.all_transactions(), "-amount")[0].id

    third_page = await user.transactions.list(page_size=10, start_page=3).first()
    assert third_page is not None and int(third_page.id) == expected[20].id

    assert await user.transactions.list(min_amount=10**9).first() is None
    assert await user.accounts.list(q="no such account anywhere").first() is None


# ------------------------------------------------------------------------------ concurrency
async def test_look_ahead_overlaps_requests(wired: tuple[ox.UserClient, Wire],
                                            sandbox: OxlinSandbox, seeded: Any) -> None:
    user, wire = wired
    account_id = next(iter(seeded.accounts))  # 100 transactions: 10 full pages + 1 empty
    await user.users.me()  # the token, before the latency
    latency = 0.1
    sandbox.set_faults(latency=latency)

    wire.reset()
    got = await user.transactions.list(account_id=account_id, page_size=10,
                                       prefetch=4).collect()
    assert ids(got) == [r.id for r in server_order(seeded.transactions[account_id])]
    assert wire.peak == 4, "the look-ahead should keep 4 pages on the wire"

    wire.reset()
    await user.transactions.list(account_id=account_id, page_size=10, prefetch=1,
                                 max_items=30).collect()
    assert wire.peak == 1
    assert len(wire.listed()) == 3


def client_tasks(before: set[asyncio.Task[Any]]) -> list[asyncio.Task[Any]]:
    """Tasks started since `before` and still pending, the emulator's own left out."""
    return [t for t in asyncio.all_tasks() - before if not t.done()
            and not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler.")]


async def wait_for_wire(wire: Wire, count: int, timeout: float = 0.1) -> None:
    """Let the look-ahead's requests reach the wire (the server holds them)."""
    deadline = time.monotonic() + timeout
    while wire.in_flight < count:
        assert time.monotonic() < deadline, f"{wire.in_flight} requests on the wire"
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.005)
    assert wire.in_flight == count


@pytest.mark.parametrize("close", ["aclosing", "plain-break"])
async def test_breaking_out_cancels_in_flight_requests(
        wired: tuple[ox.UserClient, Wire], sandbox: OxlinSandbox, seeded: Any,
        close: str) -> None:
    user, wire = wired
    account_id = next(iter(seeded.accounts))
    await user.users.me()
    latency = 0.3
    sandbox.set_faults(latency=latency)
    wire.reset()
    before = asyncio.all_tasks()

    paginator = user.transactions.list(account_id=account_id, page_size=5, prefetch=4)
    seen = []
    if close == "aclosing":
        async with contextlib.aclosing(paginator.__aiter__()) as it:
            async for tx in it:
                seen.append(tx)
                if len(seen) == 11:  # the first item of page 3
                    await wait_for_wire(wire, 3)  # the consumer works: pages 4-6 go out
                    break
        assert wire.in_flight == 0
        assert not client_tasks(before)
    else:
        async for tx in paginator:
            seen.append(tx)
            if len(seen) == 11:
                await wait_for_wire(wire, 3)
                break
        # The abandoned generator is closed by the event loop's async-generator hook.
        for _ in range(400):
            if not (client_tasks(before) or wire.in_flight):
                break
            await asyncio.sleep(0.005)
        assert not client_tasks(before) and not wire.in_flight
    assert ids(seen) == [r.id for r in server_order(seeded.transactions[account_id])][:11]
    assert len(wire.errors) == 3
    assert all(isinstance(e, asyncio.CancelledError) for e in wire.errors)
    sandbox.set_faults(latency=0)


# --------------------------------------------------------------------- data changing mid-walk
@pytest.mark.parametrize("sort", [None, "-import_date"])
async def test_walk_while_transactions_are_inserted(
        bob: ox.UserClient, sandbox: OxlinSandbox, seeded: Any, sort: str | None) -> None:
    before = {r.id for r in seeded.all_transactions()}
    sandbox.set_faults(insert_while_paging=3)

    # Pages asked one at a time: no duplicate, and nothing that existed is missed.
    got = await bob.transactions.list(page_size=20, sort=sort, prefetch=1).collect()
    walked = ids(got)
    assert len(set(walked)) == len(walked), "a duplicate id"
    assert before <= set(walked), f"missed: {sorted(before - set(walked))[:5]}"
    assert sandbox.state.counters.faults["insert"] > 0
    assert len(walked) > len(before)  # items inserted early enough were seen too

    # With the look-ahead: still no duplicate (a miss is possible when the server handles
    # a later page before an earlier one; docs/oxlin-api §7 warns that items shift).
    got = await bob.transactions.list(page_size=20, sort=sort).collect()
    walked = ids(got)
    assert len(set(walked)) == len(walked), "a duplicate id"
    sandbox.set_faults(insert_while_paging=0)


async def test_connections_and_accounts_paginate_too(client: ox.OxlinClient,
                                                      sandbox: OxlinSandbox) -> None:
    other = sandbox.users[2]  # two connections, three accounts
    data = sandbox.state.data(int(other.id))
    carol = client.as_user(other.email, other.password)
    connections = await carol.connections.list(page_size=1).collect()
    assert [int(c.id) for c in connections] == sorted(data.connections)
    # two full pages and an empty one, plus at most prefetch - 1 wasted
    assert 3 <= sandbox.state.counters.requests["GET /api/v2.1/connections"] <= 6

    got = await carol.accounts.list(page_size=1, sort="-balance").collect()
    expected = sorted(data.accounts.values(), key=lambda a: (-a.balance_cents, a.id))
    assert [int(a.id) for a in got] == [a.id for a in expected]
    assert 4 <= sandbox.state.counters.requests["GET /api/v2.1/accounts"] <= 7


def test_dedupe_memory_is_bounded_and_still_drops_shifted_items() -> None:
    from oxlin_async._pagination import _RecentIds

    recent = _RecentIds(pages=3)

    def key(item: int) -> int:
        return item

    for page in range(100):
        items = list(range(page * 1000, (page + 1) * 1000))
        assert recent.fresh(items, key) == items
        assert len(recent._seen) <= 3 * 1000  # bounded however long the walk is
    # An item of a recent page shifted into the next one comes out once ...
    assert recent.fresh([99_999, 100_000, 100_000], key) == [100_000]
    # ... and so does a duplicate within one page.
    assert recent.fresh([7, 7, 8], key) == [7, 8]
