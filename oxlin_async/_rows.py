"""The export row: its columns, their types and their order, defined once (`ROW`).

Every writer derives what it writes from `ROW`: JSON Lines its keys, CSV its header,
SQLite its ``transactions`` table. A writer says only how it spells each `Kind`
(`encoder`), so a column added, removed or moved here reaches every format.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from typing import Any, Final

import attrs

from .models import Account, Transaction


class Kind(enum.Enum):
    """What a column holds, as Python values (None where the API may leave it out)."""

    TEXT = "text"  #: str
    ENUM = "enum"  #: a str enum member, or the API's string where it is not a known member
    DECIMAL = "decimal"  #: Decimal, exact
    INSTANT = "instant"  #: an aware datetime
    DAY = "day"  #: a date


#: `Column.source` of the column that holds the key of the user a row belongs to
USER: Final = "user"
#: `Column.source` prefix of a value read from the account the row belongs to
ACCOUNT: Final = "account."


@attrs.frozen
class Column:
    name: str
    kind: Kind
    #: where the value is read: `USER`, ``"account.<attribute>"`` (of the `Account`), or
    #: else an attribute of the `Transaction`
    source: str

    @property
    def per_page(self) -> bool:
        """The same for every row of a page (one user's, one account's)."""
        return self.source == USER or self.source.startswith(ACCOUNT)


ROW: Final[tuple[Column, ...]] = (
    Column("user", Kind.TEXT, USER),
    Column("account_id", Kind.TEXT, "account_id"),
    Column("id", Kind.TEXT, "id"),
    Column("date", Kind.INSTANT, "date"),
    Column("day", Kind.DAY, "day"),  # the calendar date of `date` in Europe/Paris
    Column("amount", Kind.DECIMAL, "amount"),
    Column("currency", Kind.TEXT, "currency"),
    Column("label", Kind.TEXT, "label"),
    Column("type", Kind.ENUM, "type"),
    Column("origin", Kind.ENUM, "origin"),
    Column("status", Kind.ENUM, "status"),
    Column("category_id", Kind.TEXT, "category_id"),
    Column("import_date", Kind.INSTANT, "import_date"),
    Column("value_date", Kind.INSTANT, "value_date"),
    Column("booking_date", Kind.INSTANT, "booking_date"),
    Column("notes", Kind.TEXT, "notes"),
)

COLUMNS: Final = tuple(c.name for c in ROW)

#: the columns that name the (user, account) a row belongs to: a resumed export keeps
#: the rows of the accounts its checkpoint lists as finished
ACCOUNT_KEY: Final = ("user", "account_id")

Rows = Callable[[str, Account, Iterable[Transaction]], list[list[Any]]]


def _reader(attributes: list[str]) -> Callable[[Transaction], tuple[Any, ...]]:
    get = attrgetter(*attributes)
    if len(attributes) == 1:  # then attrgetter gives the value, not a 1-tuple
        return lambda tx: (get(tx),)
    return get


def encoder(spell: Mapping[Kind, Callable[[Any], Any]]) -> Rows:
    """A function from one page (a user's, an account's transactions) to its rows: lists
    in `ROW` order.

    `spell` says how a format writes a kind of value; kinds it leaves out are written as
    they are, and None (a value the API left out) always stays None.
    """
    def spelt(column: Column, value: Any) -> Any:
        write = spell.get(column.kind)
        return value if write is None or value is None else write(value)

    per_page = [(i, c) for i, c in enumerate(ROW) if c.per_page]  # ascending positions
    per_tx = [(i, c) for i, c in enumerate(ROW) if not c.per_page]
    read = _reader([c.source for _, c in per_tx])
    to_spell = [(i, spell[c.kind]) for i, (_, c) in enumerate(per_tx) if c.kind in spell]

    def rows(user: str, account: Account, transactions: Iterable[Transaction]
             ) -> list[list[Any]]:
        page = [(i, spelt(c, user if c.source == USER
                          else attrgetter(c.source.removeprefix(ACCOUNT))(account)))
                for i, c in per_page]
        out = []
        for tx in transactions:
            values = list(read(tx))
            for i, write in to_spell:
                if values[i] is not None:
                    values[i] = write(values[i])
            for i, value in page:  # ascending: each lands at its place in the row
                values.insert(i, value)
            out.append(values)
        return out

    return rows
