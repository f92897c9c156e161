"""`TransactionFilter`: which transactions a list, a bulk run or an export asks for.

Every filter is defined here once: its Python name (the same keyword in
``transactions.list(...)`` and ``bulk_transactions(...)``, and the same option, with
dashes, on the command line), the query parameter of GET /transactions that carries it,
and the `_params` function that checks a value and spells it for the wire (`WIRE`).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Final

import attrs

from . import _params as p
from .errors import ArgumentError
from .models import AccountType, TransactionOrigin, TransactionStatus

Amount = Decimal | int | str
When = dt.date | dt.datetime | int
Statuses = TransactionStatus | str | Iterable[TransactionStatus | str]

#: check a value given under a name, and spell it for the wire (raises `ArgumentError`)
Encode = Callable[[str, Any], str]


def _statuses(name: str, value: object) -> str:
    return p.choices(name, value, TransactionStatus)


def _account_type(name: str, value: object) -> str:
    return p.choice(name, value, AccountType)


def _origin(name: str, value: object) -> str:
    return p.choice(name, value, TransactionOrigin)


#: Python name -> (query parameter of GET /transactions, its check and spelling).
#: `since` is the one filter named differently on the wire; dates are epoch seconds there.
WIRE: Final[Mapping[str, tuple[str, Encode]]] = MappingProxyType({
    "account_id": ("account_id", p.ident),
    "account_type": ("account_type", _account_type),
    "origin": ("origin", _origin),
    "statuses": ("included_statuses", _statuses),
    "excluded_statuses": ("excluded_statuses", _statuses),
    "min_amount": ("min_amount", p.amount),
    "max_amount": ("max_amount", p.amount),
    "amount": ("amount", p.amount),
    "start_date": ("start_date", p.start_time),
    "end_date": ("end_date", p.end_time),
    "since": ("start_import_date", p.start_time),
    "category_id": ("category_id", p.text),
})

#: older spellings still accepted as keywords -> the filter they name
ALIASES: Final[Mapping[str, str]] = MappingProxyType({"start_import_date": "since"})


def _once(value: Statuses | None) -> Statuses | None:
    # A generator of statuses would be used up by the check and send nothing.
    if value is None or isinstance(value, (str, enum.Enum)) or not isinstance(value, Iterable):
        return value
    return tuple(value)


@attrs.frozen(kw_only=True, repr=False, eq=False)
class TransactionFilter:
    """The filters of a transaction list, checked when the filter is made.

    Dates are inclusive and apply to the transaction's `date`: a `datetime.date` means
    that whole day in Europe/Paris; datetimes must be timezone-aware; an int is epoch
    seconds. `since` bounds the import date instead (for incremental runs). Amounts are
    signed (a 50 € debit matches ``max_amount=-50``). `statuses` keeps only those
    statuses; `excluded_statuses` drops some. A bad value raises `ArgumentError` naming
    the argument. `to_query()` gives the query parameters (`WIRE` maps the names).
    """

    account_id: str | None = None
    account_type: AccountType | str | None = None
    origin: TransactionOrigin | str | None = None
    statuses: Statuses | None = attrs.field(default=None, converter=_once)
    excluded_statuses: Statuses | None = attrs.field(default=None, converter=_once)
    min_amount: Amount | None = None
    max_amount: Amount | None = None
    amount: Amount | None = None
    start_date: When | None = None
    end_date: When | None = None
    since: When | None = None
    category_id: str | None = None
    _query: tuple[tuple[str, str], ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        query = tuple((wire, encode(name, value)) for name, (wire, encode) in WIRE.items()
                      if (value := getattr(self, name)) is not None)
        object.__setattr__(self, "_query", query)  # frozen: set once, here

    def to_query(self) -> dict[str, str]:
        """The query parameters of GET /transactions for these filters."""
        return dict(self._query)

    # Equal when they send the same query: they select the same transactions, however
    # their values were spelt (a date or its epoch seconds, "BOOKED" or the enum member).
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TransactionFilter):
            return NotImplemented
        return self._query == other._query

    def __hash__(self) -> int:
        return hash(self._query)

    def __repr__(self) -> str:
        given = ", ".join(f"{name}={getattr(self, name)!r}" for name in WIRE
                          if getattr(self, name) is not None)
        return f"TransactionFilter({given})"

    @classmethod
    def of(cls, base: TransactionFilter | None = None, **filters: Any) -> TransactionFilter:
        """`base` (or no filter) with the keyword filters added; None means not given.

        A filter set both in `base` and as a keyword is an error rather than a silent
        override. Unknown keywords raise `TypeError`, as a function's would.
        """
        given = {name: value for name, value in filters.items() if value is not None}
        for old, new in ALIASES.items():
            if old in given:
                if new in given:
                    raise ArgumentError(old, f"is the older name of {new!r}; pass one of them")
                WIRE[new][1](old, given[old])  # the error names the spelling used
                given[new] = given.pop(old)
        unknown = sorted(set(given) - set(WIRE))
        if unknown:
            raise TypeError(f"unknown transaction filter {unknown[0]!r}")
        if base is None:
            return cls(**given)
        if not isinstance(base, TransactionFilter):
            raise ArgumentError("filter", f"must be a TransactionFilter, got {base!r}")
        twice = [name for name in given if getattr(base, name) is not None]
        if twice:
            raise ArgumentError(twice[0], "is set both in `filter` and as a keyword")
        return attrs.evolve(base, **given) if given else base
