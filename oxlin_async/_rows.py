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
    if amount.as_tuple().exponent >= -AMOUNT_SCALE:  # type: ignore[operator]
        amount = amount.quantize(Decimal(1).scaleb(-AMOUNT_SCALE))
    return f"{amount:f}"


def minor_units(amount: Decimal) -> int:
    """An amount in minor units (cents), for sums that are exact in any SQL engine."""
    minor = amount.scaleb(AMOUNT_SCALE)
    if minor != minor.to_integral_value():
        raise ValueError(f"the amount {amount} has more than {AMOUNT_SCALE} decimals")
    return int(minor)


def _reader(attributes: list[str]) -> Callable[[Transaction], tuple[Any, ...]]:
    if not attributes:
        return lambda tx: ()
    get = attrgetter(*attributes)
    if len(attributes) == 1:  # then attrgetter gives the value, not a 1-tuple
        return lambda tx: (get(tx),)
    return get


def encoder(spell: Mapping[Kind, Callable[[Any], Any]]) -> Rows:
    """A function from one `Page` to its rows: lists in `ROW` order.

    `spell` says how a format writes a kind of value (a `DAY` is given as a date, not
    the API's instant); kinds it leaves out are written as they are, and None (a value
    the API left out) always stays None.
    """
    def spelt(column: Column, value: Any) -> Any:
        if value is None:
            return None
        if column.kind is Kind.DAY:
            value = day(value)
        write = spell.get(column.kind)
        return value if write is None else write(value)

    def fix(column: Column) -> Callable[[Any], Any] | None:
        write = spell.get(column.kind)
        if column.kind is Kind.DAY:
            return (lambda v: write(day(v))) if write is not None else day
        return write

    per_page = [(i, c) for i, c in enumerate(ROW) if c.per_page]  # ascending positions
    per_tx = [(i, c) for i, c in enumerate(ROW) if not c.per_page and c.source != CATEGORY]
    category = [i for i, c in enumerate(ROW) if c.source == CATEGORY]
    read = _reader([c.source for _, c in per_tx])
    to_spell = [(i, f) for i, (_, c) in enumerate(per_tx) if (f := fix(c)) is not None]
    # the category's name is read from its id; its position, once the others are in place
    inserts = sorted([(i, c, True) for i, c in per_page]
                     + [(i, c, False) for i, c in enumerate(ROW) if i in category],
                     key=lambda x: x[0])
    write_text = spell.get(Kind.TEXT)

    def value_of(page: Page, column: Column) -> Any:
        if column.source == USER:
            return page.user
        if column.source == USER_ID:
            return page.user_id
        return attrgetter(column.source.removeprefix(ACCOUNT))(page.account)

    def rows(page: Page) -> list[list[Any]]:
        fixed_values = {i: spelt(c, value_of(page, c)) for i, c in per_page}
        names = page.categories
        out = []
        for tx in page.transactions:
            values = list(read(tx))
            for i, write in to_spell:
                if values[i] is not None:
                    values[i] = write(values[i])
            for i, _, from_page in inserts:  # ascending: each lands at its place in the row
                if from_page:
                    values.insert(i, fixed_values[i])
                else:
                    name = names.get(tx.category_id)
                    values.insert(i, name if write_text is None or name is None
                                  else write_text(name))
            out.append(values)
        return out

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
