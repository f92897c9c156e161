"""Typed, immutable models of the Oxlin Accounts API v2.1 resources.

The models require only what the OpenAPI document requires; optional fields default to
None. Unknown enum values are kept as plain ``str`` (the service adds values over time)
and extra response fields are ignored. Decoding lives in :mod:`oxlin_async._convert`.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import attrs
from yarl import URL

from .errors import ArgumentError

__all__ = [
    "PARIS",
    "Account",
    "AccountStatus",
    "AccountType",
    "AccountUsage",
    "AddConnectionResult",
    "Address",
    "Category",
    "CategoryParent",
    "Channel",
    "ChannelMode",
    "ChannelStatus",
    "Connection",
    "ConnectionStatus",
    "Owner",
    "Transaction",
    "TransactionOrigin",
    "TransactionSource",
    "TransactionStatus",
    "TransactionType",
    "User",
    "WidgetSession",
    "parse_callback_url",
]

#: Date-like transaction fields hold local midnight in this zone (README §3.1).
PARIS = ZoneInfo("Europe/Paris")


class _StrEnum(str, enum.Enum):
    # enum.StrEnum needs 3.11; these make str() and f-strings give the bare value on 3.10+.
    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, format_spec: str) -> str:
        return str.__format__(str.__str__(self), format_spec)

    def __repr__(self) -> str:
        return f"{type(self).__name__}.{self.name}"


class ConnectionStatus(_StrEnum):
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS"
    FAILED = "FAILED"
    CLOSED = "CLOSED"
    NONE = "NONE"


class ChannelMode(_StrEnum):
    REDIRECT = "REDIRECT"
    EMBEDDED = "EMBEDDED"


class ChannelStatus(_StrEnum):
    EMPTY = "EMPTY"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    PARTIAL_SUCCESS = "PARTIAL_SUCCESS"
    CLOSED = "CLOSED"
    TOKEN_EXPIRED = "TOKEN_EXPIRED"
    PASSWORD_CHANGE_REQUIRED = "PASSWORD_CHANGE_REQUIRED"
    CHALLENGE_REQUIRED = "CHALLENGE_REQUIRED"
    USER_ACTION_REQUIRED = "USER_ACTION_REQUIRED"
    AUTH_FAILED = "AUTH_FAILED"


class AccountType(_StrEnum):
    CHECKINGS = "CHECKINGS"
    SAVINGS = "SAVINGS"
    LOAN = "LOAN"
    CREDIT_CARD = "CREDIT_CARD"


class AccountStatus(_StrEnum):
    MANUAL = "MANUAL"
    ACTIVE = "ACTIVE"
    ERROR = "ERROR"
    NOT_FOUND = "NOT_FOUND"
    CLOSED = "CLOSED"
    SUSPENDED = "SUSPENDED"
    PENDING_CONSENT = "PENDING_CONSENT"


class AccountUsage(_StrEnum):
    PERSONAL = "PERSONAL"
    PROFESSIONAL = "PROFESSIONAL"


class TransactionType(_StrEnum):
    CREDIT = "CREDIT"
    DEBIT = "DEBIT"
    INTEREST = "INTEREST"
    DIVIDEND = "DIVIDEND"
    BANK_FEE = "BANK_FEE"
    DEPOSIT = "DEPOSIT"
    ATM = "ATM"
    POINT_OF_SALE = "POINT_OF_SALE"
    CREDIT_CARD_PAYMENT = "CREDIT_CARD_PAYMENT"
    INTERNAL_TRANSFER = "INTERNAL_TRANSFER"
    POTENTIAL_TRANSFER = "POTENTIAL_TRANSFER"
    CHECK = "CHECK"
    ELECTRONIC_PAYMENT = "ELECTRONIC_PAYMENT"
    CASH = "CASH"
    DIRECT_DEPOSIT = "DIRECT_DEPOSIT"
    DIRECT_DEBIT = "DIRECT_DEBIT"
    REPEATING_PAYMENT = "REPEATING_PAYMENT"
    OTHER = "OTHER"


class TransactionOrigin(_StrEnum):
    ORIGINAL = "ORIGINAL"
    UPCOMING = "UPCOMING"
    TRANSACTION = "TRANSACTION"
    RECURRING = "RECURRING"
    SCHEDULED = "SCHEDULED"


class TransactionStatus(_StrEnum):
    BOOKED = "BOOKED"
    PENDING = "PENDING"
    OTHER = "OTHER"
    EXPIRED = "EXPIRED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"


class _Model:
    """Base of the models: a repr that leaves out the fields still at their default.

    The models are declared with ``weakref_slot=False``: the decoder in ``_convert``
    fills a mutable class with the same slots and then switches the object's class,
    which CPython allows only when the slot layouts are identical.
    """

    __slots__ = ()
    __attrs_attrs__: ClassVar[Any]  # set by attrs on each model; typed for attrs.fields()

    def __repr__(self) -> str:
        parts = []
        for a in attrs.fields(type(self)):
            if not a.repr:
                continue
            value = getattr(self, a.name)
            if a.default is not attrs.NOTHING and value == a.default:
                continue
            parts.append(f"{a.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


@attrs.frozen(kw_only=True, repr=False, weakref_slot=False)
class Address(_Model):
    postcode: str | None = None


@attrs.frozen(kw_only=True, repr=False, weakref_slot=False)
class Owner(_Model):
    """Holder as reported by the bank."""

    name: str


@attrs.frozen(kw_only=True, repr=False, weakref_slot=False)
class User(_Model):
    id: str
    email: str
    creation_date: dt.datetime
    first_name: str | None = None
    last_name: str | None = None
    gender: str | None = None
    email_verified: bool | None = None
    birthdate: dt.datetime | None = None
    address: Address | None = None


@attrs.frozen(kw_only=True, repr=False, weakref_slot=False)
class Channel(_Model):
    """One way of reaching the provider inside a connection (README §6.2)."""

    channel_definition_id: str
    mode: ChannelMode | str
    status: ChannelStatus | str
    account_types: tuple[AccountType | str, ...]
    channel_definition_unavailable: bool
    expires: dt.datetime | None = None
    last_success_date: dt.datetime | None = None
    last_end_date: dt.datetime | None = None
    credentials: tuple[dict[str, Any], ...] = ()
    eligible_accounts: bool | None = None


@attrs.frozen(kw_only=True, repr=False, weakref_slot=False)
class Connection(_Model):
    """A user's link to one provider (bank)."""

    id: str
    user_id: str
    provider_id: str
    name: str
    status: ConnectionStatus | str
    creation_date: dt.datetime
    auto_sync: bool
    logo_url: str
    channels: tuple[Channel, ...]
    consent_per_account: bool
    owner: Owner | None = None
    constraints: dict[str, Any] | None = None


@attrs.frozen(kw_only=True, repr=False, weakref_slot=False)
class Account(_Model):
    """A bank account. ``loan``, ``savings`` and ``credit_card`` are undocumented."""

    id: str
    connection_id: str
    name: str
    type: AccountType | str
    status: AccountStatus | str
    currency: str
    balance: Decimal
    balance_date: dt.datetime
    creation_date: dt.datetime
    iban: str | None = None
    account_number: str | None = None
    owner: Owner | None = None
    usage: AccountUsage | str | None = None
    last_channel_definition_id: str | None = None
    classification: dict[str, Any] | None = None
    group: str | None = None
    loan: dict[str, Any] | None = None
    savings: dict[str, Any] | None = None
    credit_card: dict[str, Any] | None = None


@attrs.frozen(kw_only=True, repr=False, weakref_slot=False)
class TransactionSource(_Model):
    label: str | None = None


@attrs.frozen(kw_only=True, repr=False, weakref_slot=False)
class Transaction(_Model):
    """A transaction; ``amount`` is signed (negative means debit)."""

    id: str
    account_id: str
    amount: Decimal
    currency: str
    label: str
    type: TransactionType | str
    origin: TransactionOrigin | str
    status: TransactionStatus | str
    category_id: str
    date: dt.datetime
    import_date: dt.datetime
    notes: str | None = None
    value_date: dt.datetime | None = None
    booking_date: dt.datetime | None = None
    transaction_date: dt.datetime | None = None
    last_update_date: dt.datetime | None = None
    remittance_information: tuple[str, ...] = ()
    source: TransactionSource | None = None
    original_trx_id: str | None = None
    check_number: str | None = None

    @property
    def day(self) -> dt.date:
        """The calendar date of ``date``, which the API expresses in Europe/Paris."""
        return self.date.astimezone(PARIS).date()


@attrs.frozen(kw_only=True, repr=False, weakref_slot=False)
class CategoryParent(_Model):
    id: str
    label: str


@attrs.frozen(kw_only=True, repr=False, weakref_slot=False)
class Category(_Model):
    id: str
    label: str
    type: str
    parent: CategoryParent | None = None


def _query_value(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (str, int)):
        return str(value)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ",".join(value)  # e.g. countries=FR,BE
    raise ArgumentError(name, f"expected a str, bool, int or list of str, got {value!r}")


def _check_http_url(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ArgumentError(name, f"expected an absolute http(s) URL, got {value!r}")
    try:
        url = URL(value)
    except ValueError as exc:
        raise ArgumentError(name, f"not a valid URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ArgumentError(name, f"expected an absolute http(s) URL, got {value!r}")
    return value


@attrs.frozen(kw_only=True)
class WidgetSession:
    """A widget session (README §12.1). It lasts about an hour and can be reused."""

    # The session id grants access to the user's widget: keep it out of reprs and logs.
    session_id: str = attrs.field(repr=lambda s: f"'{s[:4]}…'")
    add_connection_link: str = attrs.field(repr=False)
    links: Mapping[str, str] = attrs.field(repr=lambda links: repr(sorted(links)))

    def add_connection_url(
        self, *, redirect_uri: str, locale: str | None = None, **params: object
    ) -> str:
        """The add-connection page URL with the given parameters (README §12.2).

        Booleans become ``true``/``false``, lists become comma-separated values and
        ``None`` values are left out; every value is percent-encoded.
        """
        query: dict[str, object] = {
            "redirect_uri": _check_http_url("redirect_uri", redirect_uri),
            "locale": locale,
            **params,
        }
        link = URL(self.add_connection_link)
        parts = [link.raw_query_string] if link.raw_query_string else []
        for name, value in query.items():
            if value is None:
                continue
            if name in link.query:
                raise ArgumentError(name, "is already part of the add_connection link")
            encoded = quote(_query_value(name, value), safe="")
            parts.append(f"{quote(name, safe='')}={encoded}")
        base = str(link.with_query(None).with_fragment(None))
        fragment = f"#{link.raw_fragment}" if link.raw_fragment else ""
        return f"{base}?{'&'.join(parts)}{fragment}"


@attrs.frozen(kw_only=True)
class AddConnectionResult:
    """How the add-connection flow ended: the query parameters the widget adds to
    ``redirect_uri`` (README §12.3).

    ``status`` is ``success`` or ``failure``; on success ``result`` is ``created`` and
    ``connection_id`` the new connection (a hint: read it with ``GET /connections/{id}``);
    on failure ``error`` is e.g. ``cancelled``, ``auth_failed`` or ``server_error``.
    """

    status: str
    result: str | None = None
    connection_id: str | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "success"

    @classmethod
    def parse_callback_url(cls, url: str) -> AddConnectionResult:
        """Parse the URL the widget redirected the browser to."""
        if not isinstance(url, str):
            raise ArgumentError("url", f"expected a str, got {type(url).__name__}")
        try:
            query = URL(url).query
        except ValueError as exc:
            raise ArgumentError("url", f"not a valid URL: {exc}") from None
        status = query.get("status")
        if not status:
            raise ArgumentError("url", "has no 'status' query parameter")
        return cls(
            status=status,
            result=query.get("result") or None,
            connection_id=query.get("connection_id") or None,
            error=query.get("error") or None,
        )


def parse_callback_url(url: str) -> AddConnectionResult:
    """Parse the widget's completion redirect; see :class:`AddConnectionResult`."""
    return AddConnectionResult.parse_callback_url(url)
