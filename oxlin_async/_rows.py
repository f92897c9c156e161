"""The export row: its columns, their types and their order, defined once (`ROW`).

This is the documented row contract (README "Export format"). Every writer derives what
it writes from `ROW`: JSON Lines its keys, CSV its header, SQLite and PostgreSQL their
``transactions`` table, Parquet its Arrow schema (`arrow_schema`); `json_schema` describes
one JSON Lines record. A writer says only how it spells each `Kind` (`encoder`), so a
column added, removed or moved here reaches every format.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from decimal import Decimal
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from .models import PARIS, Account, Transaction

if TYPE_CHECKING:
    import pyarrow


class Kind(enum.Enum):
    """What a column holds, as Python values (None where the API may leave it out)."""

    TEXT = "text"  #: str
    ENUM = "enum"  #: a str enum member, or the API's string where it is not a known member
    DECIMAL = "decimal"  #: Decimal, exact
    INSTANT = "instant"  #: an aware datetime
    #: a calendar day (a date). The API gives days as the instant of their local midnight
    #: in Europe/Paris (docs/oxlin-api §3.1): the day is that instant's date in Paris.
    DAY = "day"


#: `Column.source` of the key of the user a row belongs to (the e-mail, say)
USER: Final = "user"
#: `Column.source` of the Oxlin id of that user (from ``/users/me``)
USER_ID: Final = "user_id"
#: `Column.source` of the name of the transaction's category (from ``/categories``)
CATEGORY: Final = "category"
#: `Column.source` prefix of a value read from the account the row belongs to
ACCOUNT: Final = "account."


@attrs.frozen
class Column:
    name: str
    kind: Kind
    #: where the value is read: `USER`, `USER_ID`, `CATEGORY`, ``"account.<attribute>"``
    #: (of the `Account`), or else an attribute of the `Transaction`
    source: str
    #: the API may leave it out (None, an empty CSV cell, SQL NULL)
    nullable: bool = False
    doc: str = ""

    @property
    def per_page(self) -> bool:
        """The same for every row of a page (one user's, one account's)."""
        return self.source in (USER, USER_ID) or self.source.startswith(ACCOUNT)


C = Column
ROW: Final[tuple[Column, ...]] = (
    C("id", Kind.TEXT, "id", doc="the transaction's id"),
    C("user", Kind.TEXT, USER, doc="the user's key: the e-mail, or for token users their id"),
    C("user_id", Kind.TEXT, USER_ID, nullable=True,
      doc="the user's Oxlin id (null when the token may not read /users/me)"),
    C("connection_id", Kind.TEXT, "account.connection_id", doc="the account's connection"),
    C("account_id", Kind.TEXT, "account_id"),
    C("account_type", Kind.ENUM, "account.type", doc="e.g. CHECKINGS, SAVINGS"),
    C("date", Kind.DAY, "date", doc="the transaction's day"),
    C("value_date", Kind.DAY, "value_date", nullable=True),
    C("booking_date", Kind.DAY, "booking_date", nullable=True),
    C("amount", Kind.DECIMAL, "amount", doc="signed: a debit is negative"),
    C("currency", Kind.TEXT, "currency", doc="ISO 4217"),
    C("label", Kind.TEXT, "label"),
    C("category_id", Kind.TEXT, "category_id"),
    C("category", Kind.TEXT, CATEGORY, nullable=True,
      doc="the category's name (null for an id /categories does not list)"),
    C("type", Kind.ENUM, "type"),
    C("status", Kind.ENUM, "status", doc="e.g. BOOKED, PENDING"),
    C("origin", Kind.ENUM, "origin"),
    C("import_date", Kind.INSTANT, "import_date"),
    C("last_update_date", Kind.INSTANT, "last_update_date", nullable=True),
    C("notes", Kind.TEXT, "notes", nullable=True),
)
del C

COLUMNS: Final = tuple(c.name for c in ROW)

#: the `Transaction` attributes the rows read (the category's name is read by its id):
#: all a page needs to become rows, so a bulk export decodes only these
#: (`BulkRun(models=False)`)
TX_SOURCES: Final = tuple(dict.fromkeys(
    [c.source for c in ROW if not c.per_page and c.source != CATEGORY] + ["category_id"]))

#: the columns that name the (user, account) a row belongs to: a resumed export keeps
#: the rows of the accounts its checkpoint lists as finished
ACCOUNT_KEY: Final = ("user", "account_id")

#: the scale of amounts in the fixed-point formats (Parquet's decimal128, SQLite's
#: minor units): the API's amounts have at most two decimals
AMOUNT_SCALE: Final = 2
#: the precision of Parquet's decimal128 amounts
AMOUNT_PRECISION: Final = 18


class Page(Protocol):
    """What a row is made of: one page of one account's transactions, and whose."""

    @property
    def user(self) -> str: ...
    @property
    def user_id(self) -> str | None: ...
    @property
    def account(self) -> Account: ...
    @property
    def transactions(self) -> list[Transaction]: ...
    @property
    def categories(self) -> Mapping[str, str]: ...


Rows = Callable[[Page], list[list[Any]]]


def day(value: dt.datetime) -> dt.date:
    """The calendar day an API instant stands for (see `Kind.DAY`)."""
    return value.astimezone(PARIS).date()


def fixed(amount: Decimal) -> str:
    """An amount as text with (at least) two decimals: ``-289.00``, ``-60.50``."""
    # Formatted once, then padded: exactly what quantizing to two decimals writes, with
    # none of its Decimal arithmetic (an export formats every amount). What the padding
    # cannot vouch for (more digits than the context's precision, NaN, infinities) takes
    # the quantizing path, so it fails or writes as it always has.
    text = f"{amount:f}"
    if len(text) < 24 and text[-1] in _DIGITS:
        point = text.find(".")
        if point < 0:
            return text + ".00"
        if point == len(text) - 2:
            return text + "0"
        return text
    return _quantized(amount)


_DIGITS: Final = frozenset("0123456789")


def _quantized(amount: Decimal) -> str:
    if amount.as_tuple().exponent >= -AMOUNT_SCALE:  # type: ignore[operator]
        amount = amount.quantize(Decimal(1).scaleb(-AMOUNT_SCALE))
    return f"{amount:f}"


def minor_units(amount: Decimal) -> int:
    """An amount in minor units (cents), for sums that are exact in any SQL engine."""
    minor = amount.scaleb(AMOUNT_SCALE)
    if minor != minor.to_integral_value():
        raise ValueError(f"the amount {amount} has more than {AMOUNT_SCALE} decimals")
    return int(minor)


#: how many instants each encoder remembers the spelt day of: a page's days repeat (an
#: account has a few transactions a day), a run's are unbounded
DAYS_CACHED: Final = 4096


def _days(write: Callable[[Any], Any] | None) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(lookup, compute) of the spelt day of an instant, remembered in a bounded cache.

    The key is the instant itself: aware datetimes that compare equal are the same
    instant, hence the same day in Paris, whatever their zone, except two wall times of
    one zone that differ only by `fold` (the hour repeated when DST ends), which compare
    equal as well. So only ``fold=0`` instants are remembered or looked up (the generated
    rows test `fold` first)."""
    cache: dict[Any, Any] = {}

    def compute(value: dt.datetime) -> Any:
        spelt = day(value) if write is None else write(day(value))
        if value.fold == 0:
            if len(cache) >= DAYS_CACHED:
                cache.clear()
            cache[value] = spelt
        return spelt

    return cache.get, compute


def _generate(spell: Mapping[Kind, Callable[[Any], Any]], *, records: bool
              ) -> Callable[..., Any]:
    """One function from (transactions, the page's values, category names)
    to rows: one list (or, `records`, one dict keyed by column name) per transaction,
    every value read, spelt and placed by one generated expression, with no per-value
    Python call but the spellings themselves."""
    env: dict[str, Any] = {}
    page_args: list[str] = []
    cells: list[str] = []
    for i, column in enumerate(ROW):
        write = spell.get(column.kind)
        if column.per_page:
            page_args.append(f"p{i}")
            cell = f"p{i}"
        elif column.source == CATEGORY:
            cell = "names_get(tx.category_id)"
            if (text := spell.get(Kind.TEXT)) is not None:
                env[f"w{i}"] = text
                cell = f"(w{i}(n{i}) if (n{i} := {cell}) is not None else None)"
        else:
            if not column.source.isidentifier():  # pragma: no cover - a mistake in ROW
                raise ValueError(f"column {column.name}: source {column.source!r}")
            get = f"(v{i} := tx.{column.source})"
            if column.kind is Kind.DAY:
                env[f"g{i}"], env[f"c{i}"] = _days(write)
                cell = (f"((r{i} if v{i}.fold == 0 and (r{i} := g{i}(v{i})) is not None"
                        f" else c{i}(v{i})) if {get} is not None else None)")
            elif write is not None:
                env[f"w{i}"] = write
                cell = f"(w{i}(v{i}) if {get} is not None else None)"
            else:
                cell = f"tx.{column.source}"
        cells.append(f"{column.name!r}: {cell}" if records else cell)
    row = "{" + ", ".join(cells) + "}" if records else "[" + ", ".join(cells) + "]"
    source = (f"def rows(transactions, names_get, {', '.join(page_args)}):\n"
              f"    return [{row} for tx in transactions]\n")
    exec(compile(source, f"<export rows records={records}>", "exec"), env)
    rows: Callable[..., Any] = env["rows"]
    return rows


def encoder(spell: Mapping[Kind, Callable[[Any], Any]]) -> Rows:
    """A function from one `Page` to its rows: lists in `ROW` order.

    `spell` says how a format writes a kind of value (a `DAY` is given as a date, not
    the API's instant); kinds it leaves out are written as they are, and None (a value
    the API left out) always stays None.
    """
    return _encoder(spell, records=False)


def record_encoder(spell: Mapping[Kind, Callable[[Any], Any]]
                   ) -> Callable[[Page], list[dict[str, Any]]]:
    """As `encoder`, each row a dict keyed by column name, in `ROW` order (JSON Lines)."""
    return _encoder(spell, records=True)


def _encoder(spell: Mapping[Kind, Callable[[Any], Any]], *, records: bool
             ) -> Callable[[Page], Any]:
    def spelt(column: Column, value: Any) -> Any:
        if value is None:
            return None
        if column.kind is Kind.DAY:
            value = day(value)
        write = spell.get(column.kind)
        return value if write is None else write(value)

    def value_of(page: Page, column: Column) -> Any:
        if column.source == USER:
            return page.user
        if column.source == USER_ID:
            return page.user_id
        return attrgetter(column.source.removeprefix(ACCOUNT))(page.account)

    per_page = [c for c in ROW if c.per_page]
    generated = _generate(spell, records=records)

    def rows(page: Page) -> Any:
        return generated(page.transactions, page.categories.get,
                         *[spelt(c, value_of(page, c)) for c in per_page])

    return rows


# ------------------------------------------------------------------ derived schemas
_JSON_TYPES: Final[dict[Kind, dict[str, Any]]] = {
    Kind.TEXT: {"type": "string"},
    Kind.ENUM: {"type": "string"},
    Kind.DECIMAL: {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2,}$"},
    Kind.INSTANT: {"type": "string", "format": "date-time"},
    Kind.DAY: {"type": "string", "format": "date", "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"},
}


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one JSON Lines record, derived from `ROW`."""
    properties: dict[str, Any] = {}
    for column in ROW:
        prop = dict(_JSON_TYPES[column.kind])
        if column.nullable:
            prop["type"] = [prop["type"], "null"]
        if column.doc:
            prop["description"] = column.doc
        properties[column.name] = prop
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "oxlin-async export row",
        "type": "object",
        "properties": properties,
        "required": list(COLUMNS),
        "additionalProperties": False,
    }


def arrow_schema() -> pyarrow.Schema:
    """The Arrow schema of the rows (Parquet), derived from `ROW`: decimal128 amounts,
    date32 days, UTC timestamps (needs pyarrow: the ``parquet`` extra)."""
    import pyarrow as pa

    types = {Kind.TEXT: pa.string(), Kind.ENUM: pa.string(),
             Kind.DECIMAL: pa.decimal128(AMOUNT_PRECISION, AMOUNT_SCALE),
             Kind.INSTANT: pa.timestamp("us", tz="UTC"), Kind.DAY: pa.date32()}
    return pa.schema([pa.field(c.name, types[c.kind], nullable=c.nullable,
                               metadata={"doc": c.doc} if c.doc else None) for c in ROW])
