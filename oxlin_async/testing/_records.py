"""What the emulator holds: plain mutable records and their JSON rendering.

Ids are ints here (ordered numerically, as the reference asks) and strings on the wire.
Amounts are integer cents, so filters and sums are exact; they are written as JSON numbers
with at most two decimals.
"""

from __future__ import annotations

from typing import Any

import attrs

PARIS = "Europe/Paris"

SCOPES = (
    "openid",
    "profile",
    "profile_edit",
    "users_create",
    "accounts_read",
    "accounts_manage",
    "connections_manage",
    "connections_sync",
    "transactions_read",
)

ACCOUNT_TYPES = ("CHECKINGS", "SAVINGS", "LOAN", "CREDIT_CARD")
ACCOUNT_STATUSES = ("MANUAL", "ACTIVE", "ERROR", "NOT_FOUND", "CLOSED", "SUSPENDED",
                    "PENDING_CONSENT")
ACCOUNT_USAGES = ("PERSONAL", "PROFESSIONAL")
CONNECTION_STATUSES = ("RUNNING", "SUCCESS", "PARTIAL_SUCCESS", "FAILED", "CLOSED", "NONE")
CHANNEL_STATUSES = (
    "EMPTY",
    "RUNNING",
    "SUCCESS",
    "PARTIAL_SUCCESS",
    "CLOSED",
    "TOKEN_EXPIRED",
    "PASSWORD_CHANGE_REQUIRED",
    "CHALLENGE_REQUIRED",
    "USER_ACTION_REQUIRED",
    "AUTH_FAILED",
)
NEEDS_USER_ACTION = frozenset(CHANNEL_STATUSES[5:])
TRANSACTION_TYPES = (
    "CREDIT",
    "DEBIT",
    "INTEREST",
    "DIVIDEND",
    "BANK_FEE",
    "DEPOSIT",
    "ATM",
    "POINT_OF_SALE",
    "CREDIT_CARD_PAYMENT",
    "INTERNAL_TRANSFER",
    "POTENTIAL_TRANSFER",
    "CHECK",
    "ELECTRONIC_PAYMENT",
    "CASH",
    "DIRECT_DEPOSIT",
    "DIRECT_DEBIT",
    "REPEATING_PAYMENT",
    "OTHER",
)
TRANSACTION_ORIGINS = ("ORIGINAL", "UPCOMING", "TRANSACTION", "RECURRING", "SCHEDULED")
TRANSACTION_STATUSES = ("BOOKED", "PENDING", "OTHER", "EXPIRED", "REJECTED", "CANCELLED",
                        "REFUNDED")

#: id, French label, type, parent id (None for a top-level category).
CATEGORIES: tuple[tuple[str, str, str, str | None], ...] = (
    ("DAILY_LIFE", "Vie quotidienne", "EXPENSE", None),
    ("SUPERMARKET", "Supermarché", "EXPENSE", "DAILY_LIFE"),
    ("DRESSING", "Habillement", "EXPENSE", "DAILY_LIFE"),
    ("PETS", "Animaux", "EXPENSE", "DAILY_LIFE"),
    ("SNAKS_ANDWORK_MEALS", "Snacks et repas au travail", "EXPENSE", "DAILY_LIFE"),
    ("HOUSING", "Logement", "EXPENSE", None),
    ("TELECOM", "Télécommunications", "EXPENSE", "HOUSING"),
    ("SERVICES", "Services", "EXPENSE", "HOUSING"),
    ("LOANS", "Crédits", "EXPENSE", None),
    ("CONSUMER_LOAN", "Crédit à la consommation", "EXPENSE", "LOANS"),
    ("INCOME", "Revenus", "INCOME", None),
    ("SALARY", "Salaires", "INCOME", "INCOME"),
    ("UNCATEGORIZED", "Non catégorisé", "OTHER", None),
)
CATEGORY_IDS = frozenset(c[0] for c in CATEGORIES)


def money(cents: int) -> float | int:
    """Cents as the JSON number the server writes: whole values without decimals."""
    if cents % 100 == 0:
        return cents // 100
    # cents / 100 is the double nearest the 2-decimal value, whose repr is that value.
    return cents / 100


@attrs.define(eq=False)
class Client:
    client_id: str
    client_secret: str = attrs.field(repr=False)
    scopes: frozenset[str] = frozenset(SCOPES)


@attrs.define(eq=False)
class User:
    id: int
    email: str
    password: str = attrs.field(repr=False)
    creation_date: int
    profile: dict[str, Any] = attrs.Factory(dict)

    def to_json(self) -> dict[str, Any]:
        return {"id": str(self.id), "email": self.email, "creation_date": self.creation_date,
                **self.profile}


@attrs.define(eq=False)
class Channel:
    provider_id: str
    mode: str  # REDIRECT | EMBEDDED
    status: str = "EMPTY"
    account_types: tuple[str, ...] = ()
    expires: int | None = None
    last_success_date: int | None = None
    last_end_date: int | None = None

    @property
    def channel_definition_id(self) -> str:
        return self.provider_id + ("01" if self.mode == "REDIRECT" else "00")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "channel_definition_id": self.channel_definition_id,
            "mode": self.mode,
            "status": self.status,
            "account_types": list(self.account_types),
            "channel_definition_unavailable": False,
        }
        if self.mode == "REDIRECT":
            out["credentials"] = []
        for key in ("expires", "last_success_date", "last_end_date"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@attrs.define(eq=False)
class Connection:
    id: int
    user_id: int
    provider_id: str
    name: str
    creation_date: int
    channels: list[Channel]
    auto_sync: bool = True
    consent_per_account: bool = False
    owner_name: str | None = None
    closed: bool = False

    @property
    def status(self) -> str:
        if self.closed:
            return "CLOSED"
        used = [c.status for c in self.channels if c.status != "EMPTY"]
        if not used:
            return "NONE"
        if "RUNNING" in used:
            return "RUNNING"
        if any(s in NEEDS_USER_ACTION for s in used):
            return "FAILED"
        if all(s == "SUCCESS" for s in used):
            return "SUCCESS"
        if all(s in ("SUCCESS", "PARTIAL_SUCCESS") for s in used):
            return "PARTIAL_SUCCESS"
        return "CLOSED" if all(s == "CLOSED" for s in used) else "FAILED"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "user_id": str(self.user_id),
            "provider_id": self.provider_id,
            "name": self.name,
            "status": self.status,
            "creation_date": self.creation_date,
            "auto_sync": self.auto_sync,
            "logo_url": f"https://static.oxlin.io/common/pictures/providers_logos/{self.provider_id}.png",
            "channels": [c.to_json() for c in self.channels],
            "consent_per_account": self.consent_per_account,
        }
        if self.owner_name is not None:
            out["owner"] = {"name": self.owner_name}
        return out


@attrs.define(eq=False)
class Account:
    id: int
    connection_id: int
    user_id: int
    name: str
    type: str
    balance_cents: int
    balance_date: int
    creation_date: int
    currency: str = "EUR"
    status: str = "ACTIVE"
    usage: str = "PERSONAL"
    iban: str | None = None
    account_number: str | None = None
    owner_name: str | None = None
    last_channel_definition_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "connection_id": str(self.connection_id),
            "name": self.name,
            "type": self.type,
            "status": self.status,
            "currency": self.currency,
            "balance": money(self.balance_cents),
            "balance_date": self.balance_date,
            "creation_date": self.creation_date,
            "usage": self.usage,
        }
        if self.iban:
            out["iban"] = self.iban
        if self.account_number is not None:
            out["account_number"] = self.account_number
        if self.owner_name is not None:
            out["owner"] = {"name": self.owner_name}
        if self.last_channel_definition_id is not None:
            out["last_channel_definition_id"] = self.last_channel_definition_id
        return out


@attrs.define(eq=False, slots=True)
class Transaction:
    id: int
    account_id: int
    amount_cents: int
    currency: str
    label: str
    type: str
    origin: str
    status: str
    category_id: str
    date: int
    import_date: int
    value_date: int | None = None
    booking_date: int | None = None
    last_update_date: int | None = None
    notes: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(self.id),
            "account_id": str(self.account_id),
            "amount": money(self.amount_cents),
            "currency": self.currency,
            "label": self.label,
            "type": self.type,
            "origin": self.origin,
            "status": self.status,
            "category_id": self.category_id,
            "date": self.date,
            "import_date": self.import_date,
            "remittance_information": [self.label],
        }
        if self.value_date is not None:
            out["value_date"] = self.value_date
        if self.booking_date is not None:
            out["booking_date"] = self.booking_date
        if self.last_update_date is not None:
            out["last_update_date"] = self.last_update_date
        if self.notes is not None:
            out["notes"] = self.notes
        return out
