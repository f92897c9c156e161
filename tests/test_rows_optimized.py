"""The export's row builder is generated and remembers days (`_rows.encoder`,
`_rows.record_encoder`, `_rows.fixed`): it must give exactly the rows, and JSON Lines
exactly the bytes, of the plain builder kept here as the reference (the one the library
had before: read the attributes, insert the page's values, convert each day in Paris,
quantize each amount), over instants across DST changes in any zone, and amounts with 0
to 2 decimals (and more), negative, zero, large."""

from __future__ import annotations

import datetime as dt
import types
from collections.abc import Callable, Mapping
from decimal import Decimal
from operator import attrgetter
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oxlin_async import _export
from oxlin_async._rows import (
    ACCOUNT,
    AMOUNT_SCALE,
    CATEGORY,
    COLUMNS,
    DAYS_CACHED,
    ROW,
    USER,
    USER_ID,
    Column,
    Kind,
    _days,
    encoder,
    fixed,
    record_encoder,
)
from oxlin_async.bulk import Batch
from oxlin_async.models import (
    PARIS,
    AccountType,
    TransactionOrigin,
    TransactionStatus,
    TransactionType,
)

# ------------------------------------------------------------------ the plain reference


def plain_day(value: dt.datetime) -> dt.date:
    return value.astimezone(PARIS).date()


def plain_fixed(amount: Decimal) -> str:
    if amount.as_tuple().exponent >= -AMOUNT_SCALE:  # type: ignore[operator]
        amount = amount.quantize(Decimal(1).scaleb(-AMOUNT_SCALE))
    return f"{amount:f}"


def plain_rows(spell: Mapping[Kind, Callable[[Any], Any]], page: Batch) -> list[list[Any]]:
    def spelt(column: Column, value: Any) -> Any:
        if value is None:
            return None
        if column.kind is Kind.DAY:
            value = plain_day(value)
        if column.kind is Kind.DECIMAL and spell.get(Kind.DECIMAL) is fixed:
            return plain_fixed(value)
        write = spell.get(column.kind)
        return value if write is None else write(value)

    def value_of(tx: Any, column: Column) -> Any:
        if column.source == USER:
            return page.user
        if column.source == USER_ID:
            return page.user_id
        if column.source == CATEGORY:
            return page.categories.get(tx.category_id)
        if column.source.startswith(ACCOUNT):
            return attrgetter(column.source.removeprefix(ACCOUNT))(page.account)
        return getattr(tx, column.source)

    out = []
    for tx in page.transactions:
        row = []
        for column in ROW:
            value = value_of(tx, column)
            if column.source == CATEGORY:
                write = spell.get(Kind.TEXT)
                row.append(value if value is None or write is None else write(value))
            else:
                row.append(spelt(column, value))
        out.append(row)
    return out


# ------------------------------------------------------------------ the data
ZONES = [dt.timezone.utc, PARIS, ZoneInfo("America/New_York"), ZoneInfo("Asia/Beirut"),
         ZoneInfo("America/Nuuk"), ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Pacific/Niue"),
         dt.timezone(dt.timedelta(hours=5, minutes=30))]
#: the instants where Paris changes its offset, 2019 to 2027
DST_CHANGES = [t for year in range(2019, 2028) for t in (
    dt.datetime(year, 3, 31, 1, tzinfo=dt.timezone.utc)
    - dt.timedelta(days=(dt.date(year, 3, 31).weekday() + 1) % 7),
    dt.datetime(year, 10, 31, 1, tzinfo=dt.timezone.utc)
    - dt.timedelta(days=(dt.date(year, 10, 31).weekday() + 1) % 7))]


@st.composite
def instants(draw: st.DrawFn) -> dt.datetime:
    """An instant within two days of a DST change in Paris (or a Paris midnight, as the
    API gives days), in some zone, on either side of a repeated hour (`fold`)."""
    base = draw(st.sampled_from(DST_CHANGES))
    if draw(st.booleans()):
        local = (base.astimezone(PARIS) + dt.timedelta(days=draw(st.integers(-2, 2))))
        when = local.replace(hour=0, minute=0, second=0).astimezone(dt.timezone.utc)
    else:
        when = base + dt.timedelta(seconds=draw(st.integers(-2 * 86400, 2 * 86400)))
    zone = draw(st.sampled_from(ZONES))
    return when.astimezone(zone).replace(fold=draw(st.integers(0, 1)))


AMOUNTS = st.one_of(
    st.builds(lambda n, places: Decimal(n).scaleb(-places),
              st.integers(-10**15, 10**15), st.integers(0, 2)),
    st.builds(lambda n, places: Decimal(n).scaleb(-places),
              st.integers(-10**22, 10**22), st.integers(-3, 6)),
    st.sampled_from([Decimal("-0"), Decimal("-0.0"), Decimal("0E+3"), Decimal("1E+2"),
                     Decimal("-79.9"), Decimal("0.05")]),
)
TEXTS = st.one_of(st.text(max_size=6), st.sampled_from(["=1+1", "-x", "@a", "\tx"]))


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def enums(cls: type) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(list(cls)), st.sampled_from(["NEW_KIND", "1"]))


TRANSACTIONS = st.builds(
    types.SimpleNamespace, id=TEXTS, account_id=TEXTS, date=instants(),
    value_date=maybe(instants()), booking_date=maybe(instants()), amount=AMOUNTS,
    currency=TEXTS, label=TEXTS, category_id=st.sampled_from(["PETS", "SALARY", "UNKNOWN"]),
    type=enums(TransactionType), status=enums(TransactionStatus),
    origin=enums(TransactionOrigin), import_date=instants(), last_update_date=maybe(instants()),
    notes=maybe(TEXTS))
ACCOUNTS = st.builds(types.SimpleNamespace, connection_id=TEXTS, type=enums(AccountType))
PAGES = st.builds(
    Batch, user=TEXTS, account=ACCOUNTS, transactions=st.lists(TRANSACTIONS, max_size=8),
    user_id=maybe(TEXTS), categories=st.just({"PETS": "Animaux", "SALARY": "=Salaires"}))
#: every spelling a writer uses: text (CSV, SQLite, JSON Lines without orjson), orjson,
#: Arrow (Parquet, PostgreSQL, dlt), the values as they are
SPELLINGS = {"text": _export._TEXT, "orjson": _export._ORJSON, "arrow": {Kind.ENUM: str},
             "as is": {}}
#: built once, as the writers' are: their remembered days carry over from page to page
ENCODERS = {name: (encoder(spell), record_encoder(spell)) for name, spell in SPELLINGS.items()}


def typed(rows: list[list[Any]]) -> list[list[tuple[type, str]]]:
    return [[(type(v), repr(v)) for v in row] for row in rows]


# ------------------------------------------------------------------ the tests
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pages=st.lists(PAGES, min_size=1, max_size=4))
def test_generated_rows_equal_the_plain_rows(pages: list[Batch]) -> None:
    for page in pages:
        for name, spell in SPELLINGS.items():
            want = plain_rows(spell, page)
            rows, records = ENCODERS[name]
            got = rows(page)
            assert got == want and typed(got) == typed(want), name
            got_records = records(page)
            assert [list(r) for r in got_records] == [list(COLUMNS)] * len(want)
            assert typed([list(r.values()) for r in got_records]) == typed(want), name
        # CSV: text cells neutralised (a label or a category starting with "=")
        plain_csv = [[_export._cell(v) if ROW[i].kind is Kind.TEXT else v
                      for i, v in enumerate(row)] for row in plain_rows(_export._TEXT, page)]
        assert _export._csv_rows(page) == plain_csv


@settings(max_examples=200, deadline=None)
@given(amount=AMOUNTS)
def test_fixed_is_the_quantized_amount(amount: Decimal) -> None:
    assert fixed(amount) == plain_fixed(amount)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(pages=st.lists(PAGES, min_size=1, max_size=3))
def test_json_lines_bytes_equal_the_plain_lines(pages: list[Batch], tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    writer = _export.JsonLinesWriter(str(out), resume_offset=None)
    try:
        for page in pages:
            writer.write(page)
    finally:
        writer.finish()
    plain = b"".join(orjson.dumps(dict(zip(COLUMNS, row, strict=True)),
                                  option=orjson.OPT_APPEND_NEWLINE)
                     for page in pages for row in plain_rows(_export._ORJSON, page))
    assert out.read_bytes() == plain


class _FoldShift(dt.tzinfo):
    """A zone whose repeated wall times are two hours apart (fold 1 is two hours later):
    a wall time's two instants fall on two Paris days, though they compare equal."""

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(hours=-2 if when is not None and when.fold else 0)

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        return dt.timedelta(0)


def test_a_repeated_wall_time_is_not_taken_for_the_other_instant() -> None:
    zone = _FoldShift()
    first = dt.datetime(2023, 6, 1, 21, 30, tzinfo=zone)  # 23:30 in Paris, June 1st
    second = first.replace(fold=1)  # 01:30 in Paris, June 2nd
    assert first == second and hash(first) == hash(second)
    get, compute = _days(None)
    assert [compute(first), compute(second)] == [dt.date(2023, 6, 1), dt.date(2023, 6, 2)]
    # the cache alone would answer the first instant's day: the rows must not ask it
    assert get(second) == dt.date(2023, 6, 1)
    page = Batch("u", types.SimpleNamespace(connection_id="c", type="CHECKINGS"),  # type: ignore[arg-type]
                 [types.SimpleNamespace(
                     id=str(i), account_id="a", date=when, value_date=when, booking_date=None,
                     amount=Decimal("1"), currency="EUR", label="", category_id="PETS",
                     type="DEBIT", status="BOOKED", origin="ORIGINAL", import_date=when,
                     last_update_date=None, notes=None)
                  for i, when in enumerate([first, second, first, second])])
    for name, spell in SPELLINGS.items():
        assert ENCODERS[name][0](page) == plain_rows(spell, page), name


@pytest.mark.parametrize("zone", [dt.timezone.utc, PARIS])
def test_remembered_days_stay_bounded_and_right(zone: dt.tzinfo) -> None:
    get, compute = _days(_export._iso)
    start = dt.datetime(2022, 1, 1, tzinfo=dt.timezone.utc)
    hours = [(start + dt.timedelta(hours=h)).astimezone(zone) for h in range(3 * DAYS_CACHED)]
    for when in hours + hours[::-1]:
        remembered = get(when) if when.fold == 0 else None
        assert (remembered or compute(when)) == plain_day(when).isoformat()
        assert len(get.__self__) <= DAYS_CACHED  # type: ignore[attr-defined]
    assert len(get.__self__) > 0  # type: ignore[attr-defined]
