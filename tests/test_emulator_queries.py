"""The emulator's list endpoints over real HTTP: filters, sorts and pagination
(docs/oxlin-api §7-§9).

Expected lists are computed here, by code written for the test (filters, sorts and
pages), never with the emulator's own query code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal

import aiohttp
import attrs
import pytest
from _api import (
    ACCOUNT_TYPES,
    CATEGORY_IDS,
    DAY,
    ORIGINS,
    STATUSES,
    TX_KEYS,
    Api,
    all_txs,
    assert_error,
    euros,
    expected_txs,
    ids,
    money,
    paged,
)
from _helpers import user_data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oxlin_async.testing import OxlinSandbox, UserData
from oxlin_async.testing._records import Transaction


# ====================================================== filters, sorts and pagination
@attrs.frozen
class World:
    """A user with 900 transactions (3 accounts x 300), its data, and its token."""

    sandbox: OxlinSandbox
    api: Api
    token: str
    data: UserData
    other: UserData

    @property
    def txs(self) -> list[Transaction]:
        return all_txs(self.data)


@pytest.fixture
async def world(http: aiohttp.ClientSession) -> AsyncIterator[World]:
    async with OxlinSandbox(users=2, seed=3, transactions_per_account=300) as box:
        api = Api(http, box)
        token = await api.user_token(0, "accounts_read transactions_read")
        yield World(box, api, token, user_data(box, 0), user_data(box, 1))



# --- transaction filters ------------------------------------------------------------------
def _amount_text(cents: int) -> str:
    """How the server writes an amount (whole values without decimals)."""
    return str(cents // 100) if cents % 100 == 0 else str(Decimal(cents) / 100)


def _exponent_text(cents: int) -> str:
    return f"{cents}e-2"


def _some(txs: Sequence[Transaction], pick: Callable[[Transaction], bool]) -> Transaction:
    return sorted((t for t in txs if pick(t)), key=lambda t: t.id)[len(txs) // 50]


def _median_date(txs: Sequence[Transaction]) -> int:
    return sorted(t.date for t in txs)[len(txs) // 2]


def _next_date(txs: Sequence[Transaction]) -> int:
    """The first date after the median date that has transactions."""
    median = _median_date(txs)
    return min(t.date for t in txs if t.date > median)


TX_CASES: dict[str, Callable[[World], dict[str, str]]] = {
    "account_id": lambda w: {"account_id": str(list(w.data.accounts)[1])},
    "account_type-CHECKINGS": lambda w: {"account_type": "CHECKINGS"},
    "account_type-SAVINGS": lambda w: {"account_type": "SAVINGS"},
    "account_type-CREDIT_CARD": lambda w: {"account_type": "CREDIT_CARD"},
    "account_type-LOAN-none": lambda w: {"account_type": "LOAN"},
    **{f"origin-{o}": (lambda w, o=o: {"origin": o}) for o in ORIGINS},
    "included_statuses-one": lambda w: {"included_statuses": "PENDING"},
    "included_statuses-two": lambda w: {"included_statuses": "BOOKED,PENDING"},
    "excluded_statuses-one": lambda w: {"excluded_statuses": "BOOKED"},
    "excluded_statuses-three": lambda w: {"excluded_statuses": "BOOKED,PENDING,REFUNDED"},
    "included-and-excluded": lambda w: {"included_statuses": "BOOKED,PENDING,OTHER",
                                        "excluded_statuses": "PENDING,CANCELLED"},
    "min_amount-decimals": lambda w: {"min_amount": "-50.5"},
    "max_amount-decimals": lambda w: {"max_amount": "-10.25"},
    "min-and-max-amount": lambda w: {"min_amount": "-50.5", "max_amount": "-10.25"},
    "max_amount-negative-debits": lambda w: {"max_amount": "-50"},
    "min_amount-positive-credits": lambda w: {"min_amount": "0.01"},
    "amount-bounds-inclusive": lambda w: (lambda c: {
        "min_amount": _amount_text(c), "max_amount": _amount_text(c)})(
            _some(w.txs, lambda t: t.amount_cents % 10 != 0).amount_cents),
    "amount-as-written": lambda w: {"amount": _amount_text(
        _some(w.txs, lambda t: t.amount_cents % 10 != 0).amount_cents)},
    "amount-one-decimal": lambda w: {"amount": _amount_text(
        _some(w.txs, lambda t: t.amount_cents % 10 == 0 and t.amount_cents % 100).amount_cents)},
    "amount-two-decimals-padded": lambda w: {"amount": "{:.2f}".format(euros(
        _some(w.txs, lambda t: t.amount_cents % 10 == 0).amount_cents))},
    "amount-third-decimal-rounds": lambda w: {"amount": "{:.2f}3".format(euros(
        _some(w.txs, lambda t: t.amount_cents % 100 != 0).amount_cents))},
    "amount-whole": lambda w: {"amount": _amount_text(
        _some(w.txs, lambda t: t.amount_cents % 100 == 0).amount_cents)},
    "amount-exponent": lambda w: {"amount": _exponent_text(
        _some(w.txs, lambda t: t.amount_cents % 100 != 0).amount_cents)},
    "start_date": lambda w: {"start_date": str(_median_date(w.txs))},
    "end_date": lambda w: {"end_date": str(_median_date(w.txs))},
    "start-equals-end-inclusive": lambda w: {"start_date": str(_median_date(w.txs)),
                                             "end_date": str(_median_date(w.txs))},
    "one-paris-day": lambda w: {"start_date": str(_median_date(w.txs)),
                                "end_date": str(_median_date(w.txs) + DAY - 1)},
    "start_date-just-after-a-day": lambda w: {"start_date": str(_median_date(w.txs) + 1),
                                              "end_date": str(_next_date(w.txs))},
    "start_import_date-inclusive": lambda w: {"start_import_date": str(
        sorted(t.import_date for t in w.txs)[len(w.txs) * 3 // 4])},
    "category_id": lambda w: {"category_id": "SUPERMARKET"},
    "category_id-uncategorized": lambda w: {"category_id": "UNCATEGORIZED"},
    "combination-account-status-amount": lambda w: {
        "account_id": str(next(iter(w.data.accounts))), "included_statuses": "BOOKED",
        "min_amount": "-100", "max_amount": "100"},
    "combination-type-dates-sort": lambda w: {
        "account_type": "CHECKINGS", "start_date": str(_median_date(w.txs) - 90 * DAY),
        "end_date": str(_median_date(w.txs)), "sort": "-amount"},
    "combination-origin-category-import": lambda w: {
        "origin": "TRANSACTION", "category_id": "UNCATEGORIZED",
        "start_import_date": str(_median_date(w.txs)), "excluded_statuses": "PENDING"},
    "min-greater-than-max-none": lambda w: {"min_amount": "10", "max_amount": "-10"},
    "start-after-end-none": lambda w: {"start_date": str(_median_date(w.txs) + DAY),
                                       "end_date": str(_median_date(w.txs))},
    "unknown-account_id-none": lambda w: {"account_id": "123456789"},
    "foreign-account_id-none": lambda w: {"account_id": str(next(iter(w.other.accounts)))},
    "malformed-account_id-none": lambda w: {"account_id": "abc"},
    "unknown-category-none": lambda w: {"category_id": "NO_SUCH_CATEGORY"},
    "huge-amount-none": lambda w: {"amount": "1e30"},
    "huge-bounds-none": lambda w: {"min_amount": "1e999999999"},
    "tiny-amount-bound": lambda w: {"max_amount": "-1e-999999999"},
    "unknown-parameter-ignored": lambda w: {"colour": "blue", "x-scope": "all"},
}


async def test_transaction_filters_match_the_ground_truth(world: World) -> None:
    total = len(world.txs)
    by_id = {t.id: t for t in world.txs}
    for case, build in TX_CASES.items():
        params = build(world)
        expected = expected_txs(world.data, params)
        got = await world.api.all_pages("/transactions", world.token, **params)
        assert ids(got) == expected, (case, params)
        if case.endswith("-none"):
            assert expected == [], case
        elif case != "unknown-parameter-ignored":
            assert 0 < len(expected) < total, (case, params, len(expected))
        # The answers are the records themselves.
        for item in got[:5]:
            record = by_id[int(item["id"])]
            assert money(item["amount"]) == record.amount_cents
            assert item["date"] == record.date
            assert item["status"] == record.status


async def test_inclusive_bounds_are_exercised(world: World) -> None:
    """The boundary cases above really have items on the boundary."""
    date = _median_date(world.txs)
    assert any(t.date == date for t in world.txs)
    on_day = expected_txs(world.data, {"start_date": str(date), "end_date": str(date)})
    assert on_day
    assert expected_txs(world.data, {"start_date": str(date + 1),
                                     "end_date": str(date + DAY - 1)}) == []
    imported = sorted(t.import_date for t in world.txs)[len(world.txs) * 3 // 4]
    got = ids(await world.api.all_pages("/transactions", world.token,
                                        start_import_date=str(imported)))
    by_id = {t.id: t for t in world.txs}
    assert any(by_id[i].import_date == imported for i in got)
    # A 50 € debit matches max_amount=-50, not min_amount=50.
    debit = next(t for t in world.txs if t.amount_cents < 0)
    text = _amount_text(debit.amount_cents)
    assert debit.id in ids(await world.api.all_pages("/transactions", world.token,
                                                     max_amount=text, min_amount=text))
    assert debit.id not in ids(await world.api.all_pages("/transactions", world.token,
                                                         min_amount=text.lstrip("-")))


# --- sorting -------------------------------------------------------------------------------
async def test_default_transaction_order(world: World) -> None:
    got = ids(await world.api.all_pages("/transactions", world.token))
    expected = [t.id for t in sorted(world.txs, key=lambda t: (t.import_date, -t.id))]
    assert got == expected
    # import_date ties exist, so "then id descending" is really tested.
    imports = [t.import_date for t in world.txs]
    assert len(set(imports)) < len(imports)
    assert got != [t.id for t in sorted(world.txs, key=lambda t: (t.import_date, t.id))]


TX_SORTS = ("date", "-date", "import_date", "-import_date", "amount", "-amount",
            "-date,amount", "amount,-date", "import_date,-amount,date", "-import_date,date",
            "-amount,-import_date", "date,import_date,amount")


async def test_transaction_sorts(world: World) -> None:
    by_id = {t.id: t for t in world.txs}
    for sort in TX_SORTS:
        got = ids(await world.api.all_pages("/transactions", world.token, sort=sort))
        assert got == expected_txs(world.data, {"sort": sort}), sort
        # Ties on the sort fields exist, and are broken by id ascending.
        fields = [f.lstrip("-") for f in sort.split(",")]
        keys = [tuple(TX_KEYS[f](by_id[i]) for f in fields) for i in got]
        tied = [(a, b) for a, b, ka, kb in zip(got, got[1:], keys, keys[1:], strict=False)
                if ka == kb]
        if len(fields) == 1:
            assert tied, f"{sort}: no ties, the tie-break is not exercised"
        assert all(a < b for a, b in tied), sort


async def test_filters_and_sort_combine_on_one_account(world: World) -> None:
    account_id = str(list(world.data.accounts)[2])
    params = {"account_id": account_id, "sort": "-date,amount", "excluded_statuses": "BOOKED"}
    got = ids(await world.api.all_pages("/transactions", world.token, **params))
    assert got == expected_txs(world.data, params)
    assert got


# --- pagination ------------------------------------------------------------------------
async def test_pagination_edges(world: World) -> None:
    api, token = world.api, world.token
    full = expected_txs(world.data, {})
    assert len(full) == 900
    assert ids(await api.ok("/transactions", token, limit="1")) == full[:1]
    assert ids(await api.ok("/transactions", token, limit="1", page="2")) == full[1:2]
    assert ids(await api.ok("/transactions", token, limit="1", page="900")) == full[-1:]
    assert ids(await api.ok("/transactions", token)) == full[:100]  # default limit 100
    assert ids(await api.ok("/transactions", token, page="2")) == full[100:200]
    assert ids(await api.ok("/transactions", token, limit="500")) == full[:500]
    assert ids(await api.ok("/transactions", token, limit="500", page="2")) == full[500:]
    assert ids(await api.ok("/transactions", token, limit="0500", page="01")) == full[:500]
    for limit, page in (("500", "3"), ("1", "901"), ("100", "10"), ("7", "1000")):
        reply = await api.get("/transactions", token, limit=limit, page=page)
        assert reply.status == 200
        assert reply.json() == []
    # Bare arrays, and no count header.
    reply = await api.get("/transactions", token, limit="3")
    assert isinstance(reply.json(), list)
    assert "X-Total-Count" not in reply.headers
    assert "Link" not in reply.headers


@pytest.mark.parametrize("sort", [None, "-amount", "date,-import_date"])
async def test_pages_concatenate_to_the_full_list(world: World, sort: str | None) -> None:
    for limit in (1, 13, 100, 300, 333, 500):
        params: dict[str, str] = {}
        if limit == 1:  # a short list, to keep the number of requests down
            params = {"account_id": str(next(iter(world.data.accounts))),
                      "included_statuses": "PENDING,REFUNDED"}
        if sort is not None:
            params["sort"] = sort
        expected = expected_txs(world.data, params)
        pages: list[int] = []
        page = 1
        while True:
            items = await world.api.ok("/transactions", world.token, **params,
                                       page=str(page), limit=str(limit))
            assert len(items) <= limit
            pages += ids(items)
            if len(items) < limit:
                break
            page += 1
        assert pages == expected, (limit, sort)
        assert page == len(expected) // limit + 1


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draw=st.data())
async def test_random_transaction_queries_match_the_ground_truth(world: World,
                                                                 draw: st.DataObject) -> None:
    txs = world.txs
    dates = sorted({t.date for t in txs})
    imports = sorted({t.import_date for t in txs})
    amounts = sorted({t.amount_cents for t in txs})
    statuses = st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3,
                        unique=True).map(",".join)
    amount_text = st.one_of(
        st.sampled_from(amounts).map(_amount_text),
        st.decimals(min_value=-3000, max_value=3000, places=2).map(str),
        st.integers(-3000, 3000).map(str))
    date_text = st.one_of(st.sampled_from(dates),
                          st.integers(dates[0] - DAY, dates[-1] + DAY)).map(str)
    values: dict[str, st.SearchStrategy[str]] = {
        "account_id": st.sampled_from([*map(str, world.data.accounts), "42",
                                       str(next(iter(world.other.accounts)))]),
        "account_type": st.sampled_from(ACCOUNT_TYPES),
        "origin": st.sampled_from(ORIGINS),
        "included_statuses": statuses,
        "excluded_statuses": statuses,
        "min_amount": amount_text,
        "max_amount": amount_text,
        "amount": st.sampled_from(amounts).map(_amount_text),
        "start_date": date_text,
        "end_date": date_text,
        "start_import_date": st.one_of(st.sampled_from(imports).map(str), date_text),
        "category_id": st.sampled_from(CATEGORY_IDS),
    }
    names = draw.draw(st.lists(st.sampled_from(sorted(values)), max_size=3, unique=True),
                      label="filters")
    params = {name: draw.draw(values[name], label=name) for name in names}
    fields = draw.draw(st.lists(st.sampled_from(sorted(TX_KEYS)), max_size=3, unique=True),
                       label="sort fields")
    if fields:
        params["sort"] = ",".join(("-" if draw.draw(st.booleans()) else "") + f
                                  for f in fields)
    expected = expected_txs(world.data, params)
    if draw.draw(st.booleans(), label="one page"):
        params["limit"] = str(draw.draw(st.integers(1, 500), label="limit"))
        params["page"] = str(draw.draw(st.integers(1, 4), label="page"))
        got = ids(await world.api.ok("/transactions", world.token, **params))
        assert got == paged(expected, params), params
    else:
        got = ids(await world.api.all_pages("/transactions", world.token, **params))
        assert got == expected, params



# --- bad parameters -------------------------------------------------------------------------
BAD_PARAMETERS = [
    ("/transactions", {"sort": "name"}),
    ("/transactions", {"sort": "creation_date"}),
    ("/transactions", {"sort": "date,"}),
    ("/transactions", {"sort": ",date"}),
    ("/transactions", {"sort": ""}),
    ("/transactions", {"sort": "-"}),
    ("/transactions", {"sort": "--date"}),
    ("/transactions", {"sort": "Date"}),
    ("/transactions", {"sort": "date,-date"}),
    ("/transactions", {"sort": "amount,amount"}),
    ("/transactions", {"origin": "FOO"}),
    ("/transactions", {"origin": "transaction"}),
    ("/transactions", {"account_type": "checkings"}),
    ("/transactions", {"account_type": "CURRENT"}),
    ("/transactions", {"included_statuses": "booked"}),
    ("/transactions", {"included_statuses": "BOOKED,NOPE"}),
    ("/transactions", {"included_statuses": "BOOKED,"}),
    ("/transactions", {"excluded_statuses": "Pending"}),
    ("/transactions", {"min_amount": "abc"}),
    ("/transactions", {"max_amount": "1,5"}),
    ("/transactions", {"amount": "ten"}),
    ("/transactions", {"amount": "NaN"}),
    ("/transactions", {"min_amount": "Infinity"}),
    ("/transactions", {"max_amount": ""}),
    ("/transactions", {"min_amount": "1_000"}),
    ("/transactions", {"max_amount": " 5"}),
    ("/transactions", {"amount": "\u0663"}),
    ("/transactions", {"amount": "--5"}),
    ("/transactions", {"amount": "0x10"}),
    ("/transactions", {"start_date": "2024-01-01"}),
    ("/transactions", {"end_date": "1.5"}),
    ("/transactions", {"start_import_date": "yesterday"}),
    ("/transactions", {"start_date": ""}),
    ("/transactions", {"start_date": "--5"}),
    ("/transactions", {"end_date": "1_700_000_000"}),
    ("/transactions", {"start_import_date": "\u0663"}),
    ("/transactions", {"limit": "--1"}),
    ("/transactions", {"page": "--2"}),
    ("/transactions", {"limit": " 10"}),
    ("/transactions", {"limit": "501"}),
    ("/transactions", {"limit": "0"}),
    ("/transactions", {"limit": "-1"}),
    ("/transactions", {"limit": "ten"}),
    ("/transactions", {"limit": "1.5"}),
    ("/transactions", {"limit": ""}),
    ("/transactions", {"page": "0"}),
    ("/transactions", {"page": "-2"}),
    ("/transactions", {"page": "1.0"}),
    ("/transactions", {"page": "two"}),
    ("/accounts", {"sort": "date"}),
    ("/accounts", {"sort": "name,"}),
    ("/accounts", {"sort": "balance,-balance"}),
    ("/accounts", {"type": "checkings"}),
    ("/accounts", {"type": "PEA"}),
    ("/accounts", {"status": "active"}),
    ("/accounts", {"usage": "personal"}),
    ("/accounts", {"usage": "BUSINESS"}),
    ("/accounts", {"limit": "501"}),
    ("/accounts", {"page": "0"}),
    ("/connections", {"sort": "balance"}),
    ("/connections", {"sort": "name,"}),
    ("/connections", {"sort": "name,-name"}),
    ("/connections", {"status": "success"}),
    ("/connections", {"status": "OK"}),
    ("/connections", {"limit": "0"}),
    ("/connections", {"page": "x"}),
]


@pytest.mark.parametrize("endpoint", ["/transactions", "/accounts", "/connections"])
async def test_bad_parameters_are_bad_parameter(world: World, endpoint: str) -> None:
    cases = [params for path, params in BAD_PARAMETERS if path == endpoint]
    assert cases
    for params in cases:
        reply = await world.api.get(endpoint, world.token, **params)
        assert reply.status == 400, (endpoint, params)
        assert_error(reply, 400, "BAD_PARAMETER")
        # Even when nothing would match anyway.
        empty = {"account_id": "42"} if endpoint == "/transactions" else {
            "status" if endpoint == "/connections" else "connection_id":
                "RUNNING" if endpoint == "/connections" else "42"}
        if set(empty) & set(params):
            continue
        reply = await world.api.get(endpoint, world.token, **params, **empty)
        assert reply.status == 400, (endpoint, params, empty)
