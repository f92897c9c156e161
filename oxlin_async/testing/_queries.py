"""Filters, sorting and pagination of the three list endpoints (docs/oxlin-api §7, §8, §9).

Each list is described once by a `ListSpec`; `run_query` validates the query string
against it and returns the requested page of records.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import attrs

from ._http import bad_parameter
from ._records import (
    ACCOUNT_STATUSES,
    ACCOUNT_TYPES,
    ACCOUNT_USAGES,
    CONNECTION_STATUSES,
    TRANSACTION_ORIGINS,
    TRANSACTION_STATUSES,
    Account,
    Connection,
    Transaction,
)

R = TypeVar("R")
Predicate = Callable[[Any], bool]

MAX_LIMIT = 500
DEFAULT_LIMIT = 100


# Plain ASCII notation only: int() and Decimal() alone would also take "--5" (a crash:
# `lstrip("-")` let it through to int()), "1_000", " 5 " or non-ASCII digits.
_INTEGER = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _int(name: str, raw: str) -> int:
    if not _INTEGER.fullmatch(raw):
        raise bad_parameter(f"{name} must be an integer, got {raw!r}")
    return int(raw)


def _decimal(name: str, raw: str) -> Decimal:
    if not _NUMBER.fullmatch(raw):
        raise bad_parameter(f"{name} must be a number, got {raw!r}")
    return Decimal(raw)


def _enum(name: str, raw: str, allowed: Sequence[str]) -> str:
    if raw not in allowed:
        raise bad_parameter(f"{name} must be one of {', '.join(allowed)}; got {raw!r}")
    return raw


def _enum_list(name: str, raw: str, allowed: Sequence[str]) -> frozenset[str]:
    return frozenset(_enum(name, item, allowed) for item in raw.split(","))


def _id(raw: str) -> int | None:
    """A filter id; a malformed one matches nothing (an unknown id gives `[]`)."""
    return int(raw) if raw.isdigit() and raw.isascii() else None


# One filter: query parameter -> function(raw value) -> predicate on a record.
FilterFactory = Callable[[str], Predicate]


def _eq(attr: str, parse: Callable[[str], Any]) -> FilterFactory:
    def factory(raw: str) -> Predicate:
        wanted = parse(raw)
        return lambda r: getattr(r, attr) == wanted
    return factory


def _cents_cmp(name: str, op: Callable[[Decimal, Decimal], bool]) -> FilterFactory:
    def factory(raw: str) -> Predicate:
        # Compare in euros: scaling the bound instead could overflow the decimal context
        # (``1e999999999 * 100``) and answer 500; comparisons themselves are exact.
        bound = _decimal(name, raw)
        return lambda t: op(Decimal(t.amount_cents).scaleb(-2), bound)
    return factory


def _amount_eq(raw: str) -> Predicate:
    value = _decimal("amount", raw)
    try:
        cents = value.quantize(Decimal("0.01")).scaleb(2)
    except InvalidOperation:  # too many digits to round to cents (``1e30``): no such amount
        return lambda t: False
    return lambda t: t.amount_cents == cents


def _time_cmp(name: str, attr: str, low: bool) -> FilterFactory:
    def factory(raw: str) -> Predicate:
        bound = _int(name, raw)
        if low:
            return lambda r: getattr(r, attr) >= bound
        return lambda r: getattr(r, attr) <= bound
    return factory


def _statuses(name: str, keep: bool) -> FilterFactory:
    def factory(raw: str) -> Predicate:
        chosen = _enum_list(name, raw, TRANSACTION_STATUSES)
        return (lambda t: t.status in chosen) if keep else (lambda t: t.status not in chosen)
    return factory


def _substring(raw: str) -> Predicate:
    needle = raw.casefold()

    def match(a: Account) -> bool:
        return any(needle in (v or "").casefold() for v in (a.name, a.account_number, a.iban))
    return match


@attrs.frozen
class ListSpec:
    name: str
    filters: Mapping[str, FilterFactory]
    #: sort field -> key function
    sort_keys: Mapping[str, Callable[[Any], Any]]
    #: the order without `sort`: (key, descending) pairs, most significant first
    default_order: tuple[tuple[Callable[[Any], Any], bool], ...]


def _id_key(r: Any) -> int:
    return int(r.id)


CONNECTIONS = ListSpec(
    name="connections",
    filters={
        "status": _eq("status", lambda raw: _enum("status", raw, CONNECTION_STATUSES)),
        "provider_id": _eq("provider_id", str),
    },
    sort_keys={"creation_date": lambda c: c.creation_date, "name": lambda c: c.name.casefold()},
    default_order=((_id_key, False),),
)

ACCOUNTS = ListSpec(
    name="accounts",
    filters={
        "connection_id": _eq("connection_id", _id),
        "type": _eq("type", lambda raw: _enum("type", raw, ACCOUNT_TYPES)),
        "status": _eq("status", lambda raw: _enum("status", raw, ACCOUNT_STATUSES)),
        "usage": _eq("usage", lambda raw: _enum("usage", raw, ACCOUNT_USAGES)),
        "q": _substring,
    },
    sort_keys={"name": lambda a: a.name.casefold(), "creation_date": lambda a: a.creation_date,
               "balance": lambda a: a.balance_cents},
    default_order=((_id_key, False),),
)

TRANSACTIONS = ListSpec(
    name="transactions",
    filters={
        "account_id": _eq("account_id", _id),
        "origin": _eq("origin", lambda raw: _enum("origin", raw, TRANSACTION_ORIGINS)),
        "included_statuses": _statuses("included_statuses", keep=True),
        "excluded_statuses": _statuses("excluded_statuses", keep=False),
        "min_amount": _cents_cmp("min_amount", lambda a, b: a >= b),
        "max_amount": _cents_cmp("max_amount", lambda a, b: a <= b),
        "amount": _amount_eq,
        "start_date": _time_cmp("start_date", "date", low=True),
        "end_date": _time_cmp("end_date", "date", low=False),
        "start_import_date": _time_cmp("start_import_date", "import_date", low=True),
        "category_id": _eq("category_id", str),
        # account_type needs the accounts; the server supplies it (see `account_type_filter`).
    },
    sort_keys={"date": lambda t: t.date, "import_date": lambda t: t.import_date,
               "amount": lambda t: t.amount_cents},
    default_order=((lambda t: t.import_date, False), (_id_key, True)),
)


def account_type_filter(raw: str, accounts: Mapping[int, Account]) -> Predicate:
    wanted = _enum("account_type", raw, ACCOUNT_TYPES)
    ids = {a.id for a in accounts.values() if a.type == wanted}
    return lambda t: t.account_id in ids


def parse_sort(spec: ListSpec, raw: str | None) -> tuple[tuple[Callable[[Any], Any], bool], ...]:
    """`sort=-a,b` into (key, descending) pairs; ties always end on id ascending."""
    if raw is None:
        return spec.default_order
    order: list[tuple[Callable[[Any], Any], bool]] = []
    seen: set[str] = set()
    for item in raw.split(","):
        field = item[1:] if item.startswith("-") else item
        if not field:
            raise bad_parameter(f"sort has an empty item: {raw!r}")
        if field not in spec.sort_keys:
            raise bad_parameter(
                f"cannot sort {spec.name} by {field!r}; fields: {', '.join(spec.sort_keys)}")
        if field in seen:
            raise bad_parameter(f"sort field {field!r} is repeated")
        seen.add(field)
        order.append((spec.sort_keys[field], item.startswith("-")))
    order.append((_id_key, False))
    return tuple(order)


def parse_page(query: Mapping[str, str]) -> tuple[int, int]:
    page = _int("page", query.get("page", "1"))
    limit = _int("limit", query.get("limit", str(DEFAULT_LIMIT)))
    if page < 1:
        raise bad_parameter(f"page must be >= 1, got {page}")
    if not 1 <= limit <= MAX_LIMIT:
        raise bad_parameter(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return page, limit


def sort_records(records: Iterable[R], order: Sequence[tuple[Callable[[Any], Any], bool]]
                 ) -> list[R]:
    # Stable sorts from the least significant key up give a multi-key, mixed-direction sort.
    out = list(records)
    for key, descending in reversed(order):
        out.sort(key=key, reverse=descending)
    return out


class QueryCache:
    """The filtered, sorted list of recent queries, so that walking a list page by page
    costs one sort, not one per page. Keys must change whenever the data do."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._lists: OrderedDict[Hashable, list[Any]] = OrderedDict()

    def get(self, key: Hashable) -> list[Any] | None:
        found = self._lists.get(key)
        if found is not None:
            self._lists.move_to_end(key)
        return found

    def put(self, key: Hashable, selected: list[Any]) -> None:
        self._lists[key] = selected
        if len(self._lists) > self._size:
            self._lists.popitem(last=False)


def run_query(spec: ListSpec, records: Iterable[R], query: Mapping[str, str],
              extra_filters: Sequence[Predicate] = (), *, cache: QueryCache | None = None,
              key: Hashable = None) -> list[R]:
    """Validate everything first (a bad parameter is a 400 even on an empty list)."""
    page, limit = parse_page(query)
    selected = cache.get(key) if cache is not None else None
    if selected is None:
        order = parse_sort(spec, query.get("sort"))
        predicates = [factory(query[name]) for name, factory in spec.filters.items()
                      if name in query]
        predicates.extend(extra_filters)
        selected = sort_records((r for r in records if all(p(r) for p in predicates)), order)
        if cache is not None:
            cache.put(key, selected)
    start = (page - 1) * limit
    return selected[start:start + limit]


__all__ = ["ACCOUNTS", "CONNECTIONS", "TRANSACTIONS", "Connection", "Transaction",
           "account_type_filter", "run_query"]
