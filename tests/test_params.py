"""Query parameters: what each accepted Python value becomes on the wire, and which values
are refused (an `ArgumentError` naming the argument, before any request).

Values are read from the URLs the client sent (an aiohttp trace on a borrowed session);
refusals go to a client whose every request would fail to connect, so a value let through
by mistake shows up as a `TransportError` instead of an `ArgumentError`.
"""

from __future__ import annotations

import datetime as dt
import enum
import inspect
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from _helpers import PARIS, closed_port, new_client
from yarl import URL

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox

UTC = dt.timezone.utc
JAN_1_2025_PARIS = 1735686000  # 2025-01-01T00:00:00+01:00
#: The instants a date filter may name: 0001-01-02 to 9999-12-30, midnight UTC.
EPOCH_MIN, EPOCH_MAX = -62135510400, 253402128000


class BadOffset(dt.tzinfo):
    """A tzinfo whose offset Python refuses: a day or more (ValueError) or not a
    timedelta (TypeError)."""

    def __init__(self, offset: object) -> None:
        self.offset = offset

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta | None:
        return self.offset  # type: ignore[return-value]

    def dst(self, when: dt.datetime | None) -> dt.timedelta | None:
        return None


class NoOffset(dt.tzinfo):
    """A tzinfo that knows no offset: datetimes carrying it are naive (Python's definition)."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta | None:
        return None

    def dst(self, when: dt.datetime | None) -> dt.timedelta | None:
        return None

    def tzname(self, when: dt.datetime | None) -> str:
        return "nowhere"


# ----------------------------------------------------------------------- what is sent
class Sent:
    """The query strings of the API requests a client sent."""

    def __init__(self) -> None:
        self.urls: list[URL] = []

    def config(self) -> aiohttp.TraceConfig:
        trace = aiohttp.TraceConfig()
        trace.on_request_start.append(self._start)
        return trace

    async def _start(self, session: Any, ctx: Any, params: Any) -> None:
        if params.url.path.startswith("/api/"):
            self.urls.append(params.url)

    def last_filters(self) -> dict[str, str]:
        """The last request's query, paging left out."""
        return {k: v for k, v in self.urls[-1].query.items() if k not in ("page", "limit")}


@pytest.fixture
async def traced(sandbox: OxlinSandbox) -> AsyncIterator[tuple[ox.UserClient, Sent]]:
    sent = Sent()
    async with aiohttp.ClientSession(trace_configs=[sent.config()]) as http, \
            new_client(sandbox, session=http) as client:
        user = sandbox.users[0]
        yield client.as_user(user.email, user.password), sent


async def test_values_on_the_wire(traced: tuple[ox.UserClient, Sent]) -> None:
    user, sent = traced
    cases: list[tuple[dict[str, Any], dict[str, str]]] = [
        # ids: an int, or a str of ASCII digits, as is (leading zeros kept)
        ({"account_id": 42}, {"account_id": "42"}),
        ({"account_id": "0042"}, {"account_id": "0042"}),
        # one enum value: the member or its exact string
        ({"account_type": ox.AccountType.CREDIT_CARD}, {"account_type": "CREDIT_CARD"}),
        ({"origin": "RECURRING"}, {"origin": "RECURRING"}),
        # several: one value or many, sent once each, comma-separated, in the caller's order
        ({"statuses": "PENDING"}, {"included_statuses": "PENDING"}),
        ({"statuses": ox.TransactionStatus.BOOKED}, {"included_statuses": "BOOKED"}),
        ({"excluded_statuses": ("REJECTED", ox.TransactionStatus.PENDING, "REJECTED")},
         {"excluded_statuses": "REJECTED,PENDING"}),
        # amounts: plain decimal notation, signs and trailing zeros kept; a float as written
        ({"min_amount": Decimal("-50")}, {"min_amount": "-50"}),
        ({"max_amount": Decimal("1E+3")}, {"max_amount": "1000"}),
        ({"amount": "10.50"}, {"amount": "10.50"}),
        ({"amount": 12}, {"amount": "12"}),
        ({"amount": 0.1}, {"amount": "0.1"}),
        ({"amount": -2.5e-5}, {"amount": "-0.000025"}),  # 6 places at most (hardening)
        # a day: from its first second to its last, in Paris
        ({"start_date": dt.date(2025, 1, 1)}, {"start_date": str(JAN_1_2025_PARIS)}),
        ({"end_date": dt.date(2025, 1, 1)}, {"end_date": str(JAN_1_2025_PARIS + 86400 - 1)}),
        # 30 March 2025 is the day Paris moves to summer time: 23 hours
        ({"start_date": dt.date(2025, 3, 30), "end_date": dt.date(2025, 3, 30)},
         {"start_date": "1743289200", "end_date": str(1743289200 + 23 * 3600 - 1)}),
        # an aware moment: inclusive bounds on whole seconds (a lower bound rounds up, an
        # upper bound down, so nothing outside the moment's range is let in)
        ({"start_date": dt.datetime(2025, 1, 1, 0, 0, 0, 500_000, tzinfo=PARIS),
          "end_date": dt.datetime(2025, 1, 1, 0, 0, 9, 500_000, tzinfo=PARIS)},
         {"start_date": str(JAN_1_2025_PARIS + 1), "end_date": str(JAN_1_2025_PARIS + 9)}),
        ({"start_date": dt.datetime(2024, 12, 31, 23, 0, tzinfo=UTC),
          "end_date": dt.datetime(2024, 12, 31, 23, 0, 7, tzinfo=UTC)},
         {"start_date": str(JAN_1_2025_PARIS), "end_date": str(JAN_1_2025_PARIS + 7)}),
        # epoch seconds, as is
        ({"start_date": JAN_1_2025_PARIS, "end_date": 0},
         {"start_date": str(JAN_1_2025_PARIS), "end_date": "0"}),
        ({"category_id": "SUPERMARKET"}, {"category_id": "SUPERMARKET"}),
        # sort: a str or a sequence, fields in the caller's order, '-' for descending
        ({"sort": "-date,amount"}, {"sort": "-date,amount"}),
        ({"sort": ("import_date", "-amount")}, {"sort": "import_date,-amount"}),
    ]
    for filters, query in cases:
        await user.transactions.list(**filters).first()
        assert sent.last_filters() == query, filters

    await user.accounts.list(type="SAVINGS", q="livret", sort=["-name"]).first()
    assert sent.last_filters() == {"type": "SAVINGS", "q": "livret", "sort": "-name"}


# -------------------------------------------------------------------- what is refused
@pytest.fixture
async def nowhere() -> AsyncIterator[ox.UserClient]:
    """A user whose every request would fail to connect (and is not retried)."""
    base = f"http://127.0.0.1:{closed_port()}"
    env = ox.Environment(auth_url=base, api_url=f"{base}/v2.1", embed_url=f"{base}/v2.1")
    async with ox.OxlinClient("id", "secret", environment=env,
                              retry=ox.RetryPolicy.disabled()) as client:
        yield client.as_user("jane@example.com", "pw")


class Colour(enum.Enum):
    RED = "RED"


NAIVE = dt.datetime(2025, 1, 1, 12, 0)
ID = "must be an id made of decimal digits, got "
AMOUNT = "must be a Decimal, int or numeric str, got "
WHEN = "must be a date, an aware datetime or epoch seconds, got "
NAIVE_SAYS = ("is a naive datetime; pass an aware one (e.g. tzinfo=datetime.timezone.utc) "
              "or a date")
ACCOUNT_TYPES = ", ".join(str(t.value) for t in ox.AccountType)
ORIGINS = ", ".join(str(o.value) for o in ox.TransactionOrigin)
STATUSES = ", ".join(str(s.value) for s in ox.TransactionStatus)
SORTS = "fields: date, import_date, amount (prefix '-' for descending)"
RANGE = (f"must fall between 0001-01-02 and 9999-12-30 (epoch seconds {EPOCH_MIN} to "
         f"{EPOCH_MAX})")


class NoTimestamp(dt.datetime):
    """An aware datetime whose instant cannot be computed (as for a year-1 moment east of
    UTC on some platforms)."""

    def timestamp(self) -> float:
        raise OverflowError("date value out of range")


# (argument, bad value, the whole problem the message states)
REFUSED: list[tuple[str, Any, str]] = [
    ("account_id", Decimal("12"), ID + "Decimal('12')"),
    ("account_id", True, ID + "True"),
    ("account_id", 12.0, ID + "12.0"),
    ("account_id", "12a", ID + "'12a'"),
    ("account_id", "", ID + "''"),
    ("account_id", "-1", ID + "'-1'"),
    ("account_id", "١٢", ID + "'١٢'"),  # Arabic-Indic digits: digits, but not ASCII ones
    ("account_type", "credit_card", f"must be one of {ACCOUNT_TYPES}; got 'credit_card'"),
    ("account_type", Colour.RED, f"must be one of {ACCOUNT_TYPES}; got <Colour.RED: 'RED'>"),
    ("origin", 1, f"must be one of {ORIGINS}; got 1"),
    ("statuses", (), "must name at least one TransactionStatus, got ()"),
    ("statuses", 7, "must name at least one TransactionStatus, got 7"),
    ("statuses", ["BOOKED", "booked"], f"must be one of {STATUSES}; got 'booked'"),
    ("excluded_statuses", "", f"must be one of {STATUSES}; got ''"),
    ("min_amount", True, AMOUNT + "True"),
    ("min_amount", "ten", AMOUNT + "'ten'"),
    ("min_amount", [1], AMOUNT + "[1]"),
    ("min_amount", (1, 2), AMOUNT + "(1, 2)"),
    ("max_amount", Decimal("NaN"), "must be finite, got Decimal('NaN')"),
    ("amount", float("inf"), "must be finite, got inf"),
    ("amount", "-Infinity", "must be finite, got '-Infinity'"),
    ("start_date", NAIVE, NAIVE_SAYS),
    ("start_date", NAIVE.replace(tzinfo=NoOffset()), NAIVE_SAYS),
    ("end_date", NAIVE.replace(tzinfo=NoOffset()), NAIVE_SAYS),
    ("start_date", NAIVE.replace(tzinfo=BadOffset(dt.timedelta(days=1))),
     "has a tzinfo whose utcoffset() fails (ValueError)"),
    ("end_date", NAIVE.replace(tzinfo=BadOffset(3600)),
     "has a tzinfo whose utcoffset() fails (TypeError)"),
    ("start_date", True, WHEN + "True"),
    # the days and instants a datetime can hold, a day short of either end
    ("start_date", dt.date(1, 1, 1), RANGE),
    ("end_date", dt.date(9999, 12, 31), RANGE),
    ("start_date", dt.datetime(1, 1, 1, 23, 59, 59, tzinfo=UTC), RANGE),
    ("end_date", dt.datetime(9999, 12, 30, 0, 0, 1, tzinfo=UTC), RANGE),
    ("start_date", EPOCH_MIN - 1, RANGE),
    ("end_date", EPOCH_MAX + 1, RANGE),
    ("start_date", NoTimestamp(2025, 1, 1, tzinfo=UTC), RANGE),
    ("amount", 10**12, "must be below 1,000,000,000,000 in magnitude"),
    ("max_amount", Decimal("-1E+12"), "must be below 1,000,000,000,000 in magnitude"),
    ("min_amount", "0.0000001", "must have at most 6 decimal places"),
    ("end_date", 1.5, WHEN + "1.5"),
    ("end_date", "2025-01-01", WHEN + "'2025-01-01'"),
    ("category_id", "", "must be a non-empty str, got ''"),
    ("category_id", 42, "must be a non-empty str, got 42"),
    ("sort", "label", f"cannot sort by 'label'; {SORTS}"),
    ("sort", "", f"cannot sort by ''; {SORTS}"),
    ("sort", ["date", 5], f"cannot sort by 5; {SORTS}"),
    ("sort", "--date", f"cannot sort by '--date'; {SORTS}"),
    ("sort", "date,-date", "sorts by 'date' twice"),
    ("sort", ["-amount", "amount"], "sorts by 'amount' twice"),
    ("sort", [], "names no field; pass None for the default order"),
    ("sort", 3, "must be a str or a sequence of str, got 3"),
]


async def _attempt(call: Callable[[], Any]) -> None:
    result = call()
    if inspect.isawaitable(result):
        await result
    elif isinstance(result, ox.AsyncPaginator):
        await result.collect()


@pytest.mark.parametrize(("argument", "value", "says"), REFUSED,
                         ids=[f"{a}-{v!r}" for a, v, _ in REFUSED])
async def test_a_bad_filter_is_refused_before_any_request(
        nowhere: ox.UserClient, argument: str, value: Any, says: str) -> None:
    with pytest.raises(ox.ArgumentError) as raised:
        await _attempt(lambda: nowhere.transactions.list(**{argument: value}))
    assert raised.value.argument == argument
    assert str(raised.value) == f"invalid argument {argument!r}: {says}"


@pytest.mark.parametrize("value", [Decimal("12"), "1.0", "", "x1", True, None, "٣"])
async def test_a_bad_id_in_a_path_is_refused_before_any_request(
        nowhere: ox.UserClient, value: Any) -> None:
    for argument, call in [("transaction_id", nowhere.transactions.get),
                           ("account_id", nowhere.accounts.get),
                           ("connection_id", nowhere.connections.get)]:
        with pytest.raises(ox.ArgumentError) as raised:
            await call(value)
        assert raised.value.argument == argument
        assert str(raised.value) == f"invalid argument {argument!r}: {ID}{value!r}"


async def test_accounts_filters_are_refused_by_name(nowhere: ox.UserClient) -> None:
    for argument, value in [("type", "savings"), ("status", "OPEN"), ("usage", 3),
                            ("q", ""), ("sort", "label"), ("connection_id", "c1")]:
        with pytest.raises(ox.ArgumentError) as raised:
            await _attempt(lambda a=argument, v=value: nowhere.accounts.list(**{a: v}))
        assert raised.value.argument == argument


def test_the_edges_a_filter_takes_are_sent_as_they_are() -> None:
    edges = ox.TransactionFilter(start_date=EPOCH_MIN, end_date=EPOCH_MAX,
                                 min_amount="-999999999999.999999",
                                 max_amount=Decimal("999999999999.999999"),
                                 amount=Decimal("1.50000000"))
    assert edges.to_query() == {
        "start_date": str(EPOCH_MIN), "end_date": str(EPOCH_MAX),
        "min_amount": "-999999999999.999999", "max_amount": "999999999999.999999",
        "amount": "1.500000"}  # trailing zeros past six places dropped, the rest kept
    moments = ox.TransactionFilter(start_date=dt.datetime(1, 1, 2, tzinfo=UTC),
                                   end_date=dt.datetime(9999, 12, 30, tzinfo=UTC))
    assert moments.to_query() == {"start_date": str(EPOCH_MIN), "end_date": str(EPOCH_MAX)}
    days = ox.TransactionFilter(start_date=dt.date(1, 1, 2), end_date=dt.date(9999, 12, 30))
    paris_day = [dt.datetime(1, 1, 2, tzinfo=PARIS), dt.datetime(9999, 12, 31, tzinfo=PARIS)]
    assert days.to_query() == {"start_date": str(int(paris_day[0].timestamp())),
                               "end_date": str(int(paris_day[1].timestamp()) - 1)}
