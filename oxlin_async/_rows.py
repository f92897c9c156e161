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

from .models import Transaction


class Kind(enum.Enum):
    """What a column holds, as Python values (None where the API may leave it out)."""

    TEXT = "text"  #: str
    ENUM = "enum"  #: a str enum member, or the API's string where it is not a known member
    DECIMAL = "decimal"  #: Decimal, exact
    INSTANT = "instant"  #: an aware datetime
    DAY = "day"  #: a date


#: `Column.source` of the column that holds the key of the user a row belongs to
USER: Final = "user"


@attrs.frozen
class Column:
    name: str
    kind: Kind
    #: the `Transaction` attribute the value is read from, or `USER`
    source: str


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

Rows = Callable[[str, Iterable[Transaction]], list[list[Any]]]


def encoder(spell: Mapping[Kind, Callable[[Any], Any]]) -> Rows:
    """A function from one user's transactions to their rows (lists in `ROW` order).

    `spell` says how a format writes a kind of value; kinds it leaves out are written as
    they are, and None (a value the API left out) always stays None.
    """
    user_at = [i for i, c in enumerate(ROW) if c.source == USER]
    read = attrgetter(*(c.source for c in ROW if c.source != USER))
    spelt = [(i, spell[c.kind]) for i, c in enumerate(ROW) if c.kind in spell]

    def rows(user: str, transactions: Iterable[Transaction]) -> list[list[Any]]:
        out = []
        for tx in transactions:
            values = list(read(tx))
            for i in user_at:
                values.insert(i, user)
            for i, write in spelt:
                if values[i] is not None:
                    values[i] = write(values[i])
            out.append(values)
        return out

    return rows
