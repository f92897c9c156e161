"""Payloads of every model (from the examples of docs/oxlin-api), and the JSON parsers the
decoding tests run them through."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import orjson

from oxlin_async import _convert
from oxlin_async._convert import structure
from oxlin_async.models import (
    Account,
    Category,
    CategoryParent,
    Channel,
    Connection,
    Transaction,
    User,
)

UTC = dt.timezone.utc

# -- payloads, from the examples of openapi.yaml and docs/oxlin-api §12 -------------------------

USER: dict[str, Any] = {
    "id": "3996384", "email": "jane.doe@example.com", "creation_date": 1639524127
}
USER_FULL: dict[str, Any] = {
    **USER,
    "first_name": "Jane",
    "last_name": "Doe",
    "gender": "FEMALE",
    "email_verified": True,
    "birthdate": 482198400,
    "address": {"postcode": "84300"},
}
CHANNEL_REDIRECT: dict[str, Any] = {
    "channel_definition_id": "102201",
    "mode": "REDIRECT",
    "status": "SUCCESS",
    "expires": 1647300580,
    "last_success_date": 1639998109,
    "last_end_date": 1639998109,
    "credentials": [],
    "account_types": ["CHECKINGS", "CREDIT_CARD"],
    "channel_definition_unavailable": False,
}
CHANNEL_EMBEDDED: dict[str, Any] = {
    "channel_definition_id": "102200",
    "mode": "EMBEDDED",
    "status": "EMPTY",
    "account_types": ["CHECKINGS", "SAVINGS", "LOAN", "CREDIT_CARD"],
    "channel_definition_unavailable": False,
}
CONNECTION: dict[str, Any] = {
    "id": "4422323",
    "user_id": "3996384",
    "provider_id": "1022",
    "name": "Crédit Agricole - Languedoc",
    "status": "SUCCESS",
    "creation_date": 1639524236,
    "auto_sync": True,
    "logo_url": "https://static.oxlin.io/common/pictures/providers_logos/1022.png",
    "channels": [CHANNEL_REDIRECT, CHANNEL_EMBEDDED],
    "owner": {"name": "JANE DOE"},
    "consent_per_account": False,
}
ACCOUNT: dict[str, Any] = {
    "id": "63723418",
    "connection_id": "4422323",
    "name": "COMPTE COURANT / CA",
    "type": "CHECKINGS",
    "status": "ACTIVE",
    "currency": "EUR",
    "balance": 2441.46,
    "balance_date": 1639998109,
    "creation_date": 1639524239,
    "iban": "FR7630003000502376843574B66",
    "account_number": "03412687000",
    "owner": {"name": "JANE DOE"},
    "usage": "PERSONAL",
    "last_channel_definition_id": "102201",
}
TRANSACTION: dict[str, Any] = {
    "id": "2433482741",
    "account_id": "63723418",
    "amount": -79.99,
    "currency": "EUR",
    "label": "France Télécom",
    "type": "DEBIT",
    "origin": "TRANSACTION",
    "status": "BOOKED",
    "category_id": "SERVICES",
    "date": 1639954800,
    "import_date": 1639998109,
    "value_date": 1639954800,
    "booking_date": 1639954800,
    "last_update_date": 1639998109,
    "remittance_information": ["France Télécom"],
}
CATEGORY: dict[str, Any] = {
    "id": "SUPERMARKET",
    "label": "Supermarché",
    "type": "EXPENSE",
    "parent": {"id": "DAILY_LIFE", "label": "Vie quotidienne"},
}
SESSION_ID = "1cKfm7JqrAXbU0fo_vfjDVpb7dsfMc8t"
LINK = f"https://sandbox-embed.oxlin.io/widget/add_connection?session_id={SESSION_ID}"
WIDGET: dict[str, Any] = {"session_id": SESSION_ID, "_links": {"add_connection": LINK}}

# Every model that comes in pages or alone, with a payload and its required fields.
#: Each model, a payload, and its required fields: the essential ones without a default
#: (the others are read tolerantly, docs/oxlin-api §15). The last is only ever nested.
MODELS: list[tuple[type[Any], dict[str, Any], list[str]]] = [
    (User, USER, ["id", "email", "creation_date"]),
    (Connection, CONNECTION, ["id", "user_id", "provider_id", "status", "creation_date"]),
    (Channel, CHANNEL_REDIRECT, ["channel_definition_id"]),
    (Account, ACCOUNT, ["id", "connection_id", "type", "status", "currency",
                        "balance", "balance_date", "creation_date"]),
    (Transaction, TRANSACTION, ["id", "account_id", "amount", "currency", "type",
                                "status", "category_id", "date", "import_date"]),
    (Category, CATEGORY, ["id"]),
    (CategoryParent, {"id": "DAILY_LIFE", "label": "Vie quotidienne"}, ["id"]),
]

Decoder = Callable[[Any, type[Any]], Any]


def _orjson(body: bytes) -> Any:
    return orjson.loads(body)


def _stdlib(body: bytes) -> Any:
    return _convert._loads_stdlib(body)


PARSERS = {"orjson": _orjson, "stdlib": _stdlib}


def both_parsers(payload: Any, cls: type[Any]) -> list[Any]:
    body = json.dumps(payload).encode()
    return [structure(parse(body), cls) for parse in PARSERS.values()]
