"""Query parameters from Python values, validated before any request is sent.

Every function takes the argument's name so that its `ArgumentError` says which
argument was wrong.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import TypeVar

from .errors import ArgumentError
from .models import PARIS

E = TypeVar("E", bound=enum.Enum)

#: Amounts are euros and cents: beyond these bounds no account holds them, and the
#: wire spelling would be a number of any length (``1e999999`` has a million digits).
AMOUNT_MAX = Decimal(10) ** 12
AMOUNT_PLACES = 6
#: The days and instants a date filter may name: what a `datetime` can represent, a day
#: short of either end (an end date means "up to the next day's midnight", which for
#: 9999-12-31 does not exist).
FIRST_DAY = dt.date(1, 1, 2)
LAST_DAY = dt.date(9999, 12, 30)
EPOCH_MIN = int(dt.datetime(1, 1, 2, tzinfo=dt.timezone.utc).timestamp())
EPOCH_MAX = int(dt.datetime(9999, 12, 30, tzinfo=dt.timezone.utc).timestamp())


def ident(name: str, value: object) -> str:
    """An id: a string of decimal digits (an int is accepted)."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not text.isdigit() or not text.isascii():
        raise ArgumentError(name, f"must be an id made of decimal digits, got {value!r}")
    return text


def choice(name: str, value: object, kind: type[E]) -> str:
    """One value of an enum (a member, or its exact upper-case string)."""
    if isinstance(value, kind):
        return str(value.value)
    if isinstance(value, str) and value in kind._value2member_map_:
        return value
    allowed = ", ".join(str(m.value) for m in kind)
    raise ArgumentError(name, f"must be one of {allowed}; got {value!r}")


def choices(name: str, values: object, kind: type[E]) -> str:
    """A set of enum values, sent as one comma-separated value (never repeated keys)."""
    items: Iterable[object] = (values,) if isinstance(values, (str, enum.Enum)) else \
        values if isinstance(values, Iterable) else ()
    out = [choice(name, v, kind) for v in items]
    if not out:
        raise ArgumentError(name, f"must name at least one {kind.__name__}, got {values!r}")
    return ",".join(dict.fromkeys(out))


def amount(name: str, value: object) -> str:
    if isinstance(value, bool):
        raise ArgumentError(name, f"must be a Decimal, int or numeric str, got {value!r}")
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        raise ArgumentError(name, f"must be a Decimal, int or numeric str, got {value!r}") \
            from None
    if not number.is_finite():
        raise ArgumentError(name, f"must be finite, got {value!r}")
    if abs(number) >= AMOUNT_MAX:
        raise ArgumentError(name, f"must be below {AMOUNT_MAX:,f} in magnitude")
    if number and number.normalize().as_tuple().exponent < -AMOUNT_PLACES:  # type: ignore[operator]
        raise ArgumentError(name, f"must have at most {AMOUNT_PLACES} decimal places")
    if number.as_tuple().exponent < -AMOUNT_PLACES:  # type: ignore[operator]
        number = number.quantize(Decimal(1).scaleb(-AMOUNT_PLACES))  # trailing zeros only
    return format(number, "f")


def _epoch_of(name: str, value: object) -> float:
    if isinstance(value, dt.datetime):
        try:
            offset = value.utcoffset()
        except (TypeError, ValueError) as exc:  # a caller's tzinfo gives no usable offset
            raise ArgumentError(
                name, f"has a tzinfo whose utcoffset() fails ({type(exc).__name__})") from None
        if value.tzinfo is None or offset is None:
            raise ArgumentError(name, "is a naive datetime; pass an aware one "
                                      "(e.g. tzinfo=datetime.timezone.utc) or a date")
        try:
            return _in_range(name, value.timestamp())
        except (OverflowError, ValueError):  # year 1 in a zone east of UTC, say
            raise ArgumentError(name, _RANGE) from None
    if isinstance(value, int) and not isinstance(value, bool):
        return _in_range(name, value)
    raise ArgumentError(name, f"must be a date, an aware datetime or epoch seconds, got {value!r}")


_RANGE = (f"must fall between {FIRST_DAY} and {LAST_DAY} (epoch seconds "
          f"{EPOCH_MIN} to {EPOCH_MAX})")


def _in_range(name: str, epoch: float) -> float:
    if not EPOCH_MIN <= epoch <= EPOCH_MAX:
        raise ArgumentError(name, _RANGE)
    return epoch


def _paris_midnight(name: str, day: dt.date, days_after: int = 0) -> int:
    if not FIRST_DAY <= day <= LAST_DAY:
        raise ArgumentError(name, _RANGE)
    day += dt.timedelta(days=days_after)
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=PARIS).timestamp())


def start_time(name: str, value: object) -> str:
    """An inclusive lower bound; a date means that day's start in Europe/Paris."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return str(_paris_midnight(name, value))
    return str(math.ceil(_epoch_of(name, value)))


def end_time(name: str, value: object) -> str:
    """An inclusive upper bound; a date means the whole of that day in Europe/Paris."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return str(_paris_midnight(name, value, days_after=1) - 1)
    return str(math.floor(_epoch_of(name, value)))


def sort(name: str, value: str | Sequence[str], fields: Sequence[str]) -> str:
    """``"-date,amount"`` or ``["-date", "amount"]``: known fields, each once."""
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise ArgumentError(name, f"must be a str or a sequence of str, got {value!r}")
    if not items:  # would send an empty `sort`, which the server rejects
        raise ArgumentError(name, "names no field; pass None for the default order")
    seen: set[str] = set()
    for item in items:
        field = item[1:] if isinstance(item, str) and item.startswith("-") else item
        if field not in fields:
            raise ArgumentError(name, f"cannot sort by {item!r}; fields: {', '.join(fields)} "
                                      "(prefix '-' for descending)")
        if field in seen:
            raise ArgumentError(name, f"sorts by {field!r} twice")
        seen.add(field)
    return ",".join(items)


def text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ArgumentError(name, f"must be a non-empty str, got {value!r}")
    return value
