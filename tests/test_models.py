"""Models, the converter and the error hierarchy (no network)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import pickle
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import attrs
import orjson
import pytest
import yarl
from hypothesis import given, settings
from hypothesis import strategies as st

import oxlin_async as ox
from oxlin_async import _convert, _gen
from oxlin_async._convert import loads, structure, structure_list
from oxlin_async.errors import (
    APIError,
    ArgumentError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    DecodeError,
    InternalServerError,
    InvalidClientError,
    InvalidGrantError,
    NotFoundError,
    OAuthError,
    OxlinError,
    PermissionDeniedError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    ServiceUnavailableError,
    TransportError,
    api_error_from_response,
)
from oxlin_async.models import (
    Account,
    AccountStatus,
    AccountType,
    AccountUsage,
    AddConnectionResult,
    Address,
    Category,
    CategoryParent,
    Channel,
    ChannelMode,
    ChannelStatus,
    Connection,
    ConnectionStatus,
    Owner,
    Transaction,
    TransactionOrigin,
    TransactionSource,
    TransactionStatus,
    TransactionType,
    User,
    WidgetSession,
    parse_callback_url,
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
MODELS: list[tuple[type[Any], dict[str, Any], list[str]]] = [
    (User, USER, ["id", "email", "creation_date"]),
    (Connection, CONNECTION, ["id", "user_id", "provider_id", "name", "status",
                              "creation_date", "auto_sync", "logo_url", "channels",
                              "consent_per_account"]),
    (Channel, CHANNEL_REDIRECT, ["channel_definition_id", "mode", "status", "account_types",
                                 "channel_definition_unavailable"]),
    (Account, ACCOUNT, ["id", "connection_id", "name", "type", "status", "currency",
                        "balance", "balance_date", "creation_date"]),
    (Transaction, TRANSACTION, ["id", "account_id", "amount", "currency", "label", "type",
                                "origin", "status", "category_id", "date", "import_date"]),
    (Category, CATEGORY, ["id", "label", "type"]),
    (Owner, {"name": "JANE DOE"}, ["name"]),
]

Decoder = Callable[[Any, type[Any]], Any]


def _orjson(body: bytes) -> Any:
    return orjson.loads(body)


def _stdlib(body: bytes) -> Any:
    return _convert._loads_stdlib(body)


PARSERS = {"orjson": _orjson, "stdlib": _stdlib}


@pytest.fixture(params=["orjson/one", "orjson/page", "stdlib/one", "stdlib/page"])
def decode(request: pytest.FixtureRequest) -> Decoder:
    """Serialise a payload, parse it with one JSON library, decode it one way."""
    parser, way = request.param.split("/")

    def run(payload: Any, cls: type[Any]) -> Any:
        data = PARSERS[parser](json.dumps(payload).encode())
        if way == "one":
            return structure(data, cls)
        (obj,) = structure_list([data], cls)
        return obj

    return run


def both_parsers(payload: Any, cls: type[Any]) -> list[Any]:
    body = json.dumps(payload).encode()
    return [structure(parse(body), cls) for parse in PARSERS.values()]


# -- decoding --------------------------------------------------------------------------


def test_user_minimal(decode: Decoder) -> None:
    user = decode(USER, User)
    assert user == User(
        id="3996384",
        email="jane.doe@example.com",
        creation_date=dt.datetime(2021, 12, 14, 23, 22, 7, tzinfo=UTC),
    )
    assert user.first_name is None and user.address is None and user.email_verified is None


def test_user_full(decode: Decoder) -> None:
    user = decode(USER_FULL, User)
    assert (user.first_name, user.last_name, user.gender) == ("Jane", "Doe", "FEMALE")
    assert user.email_verified is True
    assert user.birthdate == dt.datetime(1985, 4, 13, tzinfo=UTC)
    assert user.address == Address(postcode="84300")


def test_connection(decode: Decoder) -> None:
    conn = decode(CONNECTION, Connection)
    assert conn.id == "4422323" and conn.provider_id == "1022"
    assert conn.status is ConnectionStatus.SUCCESS
    assert conn.creation_date == dt.datetime.fromtimestamp(1639524236, UTC)
    assert conn.auto_sync is True and conn.consent_per_account is False
    assert conn.owner == Owner(name="JANE DOE")
    assert conn.constraints is None
    redirect, embedded = conn.channels
    assert isinstance(conn.channels, tuple)
    assert redirect.mode is ChannelMode.REDIRECT and redirect.status is ChannelStatus.SUCCESS
    assert redirect.account_types == (AccountType.CHECKINGS, AccountType.CREDIT_CARD)
    assert redirect.expires == dt.datetime(2022, 3, 14, 23, 29, 40, tzinfo=UTC)
    assert redirect.last_success_date == redirect.last_end_date
    assert redirect.credentials == () and redirect.channel_definition_unavailable is False
    assert embedded.status is ChannelStatus.EMPTY and embedded.expires is None
    assert embedded.account_types == tuple(AccountType)


def test_channel_credentials_are_kept() -> None:
    creds = [{"name": "login", "type": "TEXT"}, {"name": "password", "type": "PASSWORD"}]
    channel = structure({**CHANNEL_EMBEDDED, "credentials": creds}, Channel)
    assert channel.credentials == tuple(creds)


def test_account(decode: Decoder) -> None:
    account = decode(ACCOUNT, Account)
    assert account.type is AccountType.CHECKINGS and account.status is AccountStatus.ACTIVE
    assert account.usage is AccountUsage.PERSONAL
    assert account.balance == Decimal("2441.46") and str(account.balance) == "2441.46"
    assert account.balance_date == dt.datetime.fromtimestamp(1639998109, UTC)
    assert account.iban == "FR7630003000502376843574B66"
    assert account.owner == Owner(name="JANE DOE")
    assert (account.loan, account.savings, account.credit_card, account.group) == (None,) * 4


def test_account_type_specific_details() -> None:
    loan = {"rate": 1.2, "maturity_date": 1900000000}
    account = structure({**ACCOUNT, "type": "LOAN", "loan": loan, "group": "G1"}, Account)
    assert account.type is AccountType.LOAN and account.loan == loan and account.group == "G1"


def test_transaction(decode: Decoder) -> None:
    tx = decode(TRANSACTION, Transaction)
    assert tx.amount == Decimal("-79.99") and str(tx.amount) == "-79.99"
    assert tx.type is TransactionType.DEBIT
    assert tx.origin is TransactionOrigin.TRANSACTION
    assert tx.status is TransactionStatus.BOOKED
    assert tx.date == dt.datetime(2021, 12, 19, 23, 0, tzinfo=UTC)
    assert tx.day == dt.date(2021, 12, 20)  # docs/oxlin-api §3.1: the Paris date, not the UTC one
    assert tx.import_date == dt.datetime(2021, 12, 20, 11, 1, 49, tzinfo=UTC)
    assert tx.value_date == tx.booking_date == tx.date
    assert tx.transaction_date is None and tx.notes is None and tx.source is None
    assert tx.remittance_information == ("France Télécom",)
    assert (tx.original_trx_id, tx.check_number) == (None, None)


def test_transaction_optional_fields(decode: Decoder) -> None:
    tx = decode(
        {
            **TRANSACTION,
            "notes": "line 1\nline 2",
            "transaction_date": 1639868400,
            "source": {"label": "CARTE X1234"},
            "original_trx_id": "123",
            "check_number": "0004567",
        },
        Transaction,
    )
    assert tx.notes == "line 1\nline 2"
    assert tx.transaction_date == dt.datetime(2021, 12, 18, 23, 0, tzinfo=UTC)
    assert tx.source == TransactionSource(label="CARTE X1234")
    assert (tx.original_trx_id, tx.check_number) == ("123", "0004567")


def test_transaction_without_optional_fields(decode: Decoder) -> None:
    required = {k: TRANSACTION[k] for k in MODELS[4][2]}
    tx = decode(required, Transaction)
    assert tx.remittance_information == () and tx.value_date is None


@pytest.mark.parametrize(
    ("epoch", "day"),
    [
        (1639954800, dt.date(2021, 12, 20)),  # winter: UTC+1
        (1655935200, dt.date(2022, 6, 23)),  # summer: UTC+2
        (1640041199, dt.date(2021, 12, 20)),  # 23:59:59 in Paris, 22:59:59 UTC
        (1640041200, dt.date(2021, 12, 21)),
    ],
)
def test_transaction_day_is_the_paris_date(epoch: int, day: dt.date) -> None:
    tx = structure({**TRANSACTION, "date": epoch}, Transaction)
    assert tx.day == day


def test_timestamps_are_aware_utc(decode: Decoder) -> None:
    tx = decode(TRANSACTION, Transaction)
    for value in (tx.date, tx.import_date, tx.value_date, tx.last_update_date):
        assert value is not None
        assert value.tzinfo is UTC and value.utcoffset() == dt.timedelta(0)
    assert int(tx.date.timestamp()) == TRANSACTION["date"]


def test_category(decode: Decoder) -> None:
    child = decode(CATEGORY, Category)
    assert child == Category(
        id="SUPERMARKET",
        label="Supermarché",
        type="EXPENSE",
        parent=CategoryParent(id="DAILY_LIFE", label="Vie quotidienne"),
    )
    parent = decode({"id": "DAILY_LIFE", "label": "Vie quotidienne", "type": "EXPENSE"}, Category)
    assert parent.parent is None


def test_categories_page() -> None:
    data = loads(json.dumps([CATEGORY, {"id": "UNCATEGORIZED", "label": "x", "type": "OTHER"}]))
    assert [c.id for c in structure_list(data, Category)] == ["SUPERMARKET", "UNCATEGORIZED"]


def test_widget_session(decode: Decoder) -> None:
    links = {**WIDGET["_links"], "terms": "https://sandbox-embed.oxlin.io/terms", "x": {"y": 1}}
    session = decode({**WIDGET, "_links": links, "extra": True}, WidgetSession)
    assert session.session_id == SESSION_ID
    assert session.add_connection_link == LINK
    assert session.links == {"add_connection": LINK, "terms": links["terms"]}
    # the session id opens the user's widget: it stays out of reprs
    assert SESSION_ID not in repr(session) and "add_connection" in repr(session)


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        ({"_links": WIDGET["_links"]}, "'session_id'"),
        ({"session_id": SESSION_ID}, "'_links'"),
        ({"session_id": SESSION_ID, "_links": {}}, "'add_connection'"),
        ({"session_id": SESSION_ID, "_links": []}, "expected an object"),
        ({"session_id": 5, "_links": WIDGET["_links"]}, "expected a string"),
    ],
)
def test_widget_session_wrong_shape(payload: dict[str, Any], detail: str) -> None:
    with pytest.raises(DecodeError, match="WidgetSession") as raised:
        structure(payload, WidgetSession)
    assert detail in str(raised.value)


# -- exact amounts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "literal",
    ["-79.99", "0.1", "0.01", "-0.5", "100.1", "100.10", "-288", "0", "1e2", "2.5E1",
     "2441.46", "9999999999999.99", "-1234567890123.45", "123456789012345"],
)
@pytest.mark.parametrize("parser", ["orjson", "stdlib"])
def test_amounts_are_exact(literal: str, parser: str) -> None:
    body = f'{{"balance": {literal}}}'.encode()
    data = {**ACCOUNT, "balance": PARSERS[parser](body)["balance"]}
    for account in (structure(data, Account), structure_list([data], Account)[0]):
        assert isinstance(account.balance, Decimal)
        assert account.balance == Decimal(literal)
        if parser == "stdlib" or "e" not in literal.lower():
            # the digits the server wrote (orjson's floats lose only trailing zeros)
            assert account.balance.normalize() == Decimal(literal).normalize()
            assert str(account.balance) in (literal, str(Decimal(literal)), literal[:-1])


def test_amount_from_an_int_keeps_no_fraction() -> None:
    (a, b) = both_parsers({**TRANSACTION, "amount": -288}, Transaction)
    assert str(a.amount) == str(b.amount) == "-288"


def test_amount_literal_is_recovered_from_orjson_float() -> None:
    tx = structure(orjson.loads(json.dumps({**TRANSACTION, "amount": 0.1})), Transaction)
    assert str(tx.amount) == "0.1"  # not 0.1000000000000000055511151231257827...


@settings(max_examples=300, deadline=None)
@given(
    st.decimals(
        min_value=Decimal("-9999999999999.99"),
        max_value=Decimal("9999999999999.99"),
        places=2,
        allow_nan=False,
        allow_infinity=False,
    )
)
def test_two_decimal_amounts_survive_both_json_paths(amount: Decimal) -> None:
    body = json.dumps({**TRANSACTION, "amount": "__AMOUNT__"}).replace(
        '"__AMOUNT__"', str(amount)
    ).encode()
    for parse in PARSERS.values():
        one = structure(parse(body), Transaction)
        (page,) = structure_list([parse(body)], Transaction)
        assert one.amount == page.amount == amount


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=4102444800))
def test_any_epoch_becomes_the_same_instant(epoch: int) -> None:
    tx = structure({**TRANSACTION, "import_date": epoch}, Transaction)
    assert tx.import_date.timestamp() == epoch and tx.import_date.tzinfo is UTC


def test_epoch_cache_stays_bounded() -> None:
    base = 1_600_000_000
    page = [{**TRANSACTION, "import_date": base + i} for i in range(_gen._EPOCH_CACHE_MAX + 10)]
    txs = structure_list(page, Transaction)
    assert len(_gen._EPOCH_CACHE) <= _gen._EPOCH_CACHE_MAX
    assert [int(t.import_date.timestamp()) for t in txs] == [base + i for i in range(len(page))]


# -- leniency: unknown enum values and extra fields ------------------------------------


def test_unknown_enum_values_are_kept_as_str(decode: Decoder) -> None:
    tx = decode({**TRANSACTION, "type": "CRYPTO", "origin": "NEW", "status": "HELD"}, Transaction)
    assert (tx.type, tx.origin, tx.status) == ("CRYPTO", "NEW", "HELD")
    assert type(tx.type) is str and type(tx.status) is str
    account = decode({**ACCOUNT, "type": "PEA", "status": "FROZEN", "usage": "MIXED"}, Account)
    assert (account.type, account.status, account.usage) == ("PEA", "FROZEN", "MIXED")
    conn = decode(
        {
            **CONNECTION,
            "status": "MIGRATING",
            "channels": [{**CHANNEL_REDIRECT, "mode": "API", "status": "PAUSED",
                          "account_types": ["CHECKINGS", "PEA"]}],
        },
        Connection,
    )
    assert conn.status == "MIGRATING"
    (channel,) = conn.channels
    assert (channel.mode, channel.status) == ("API", "PAUSED")
    assert channel.account_types == (AccountType.CHECKINGS, "PEA")
    assert type(channel.account_types[1]) is str


def test_extra_fields_are_ignored(decode: Decoder) -> None:
    tx = decode({**TRANSACTION, "memo": "x", "source": {"label": "L", "kind": 1}}, Transaction)
    assert tx == decode({**TRANSACTION, "source": {"label": "L"}}, Transaction)
    conn = decode(
        {**CONNECTION, "constraints": {"a": 1}, "new": [1],
         "channels": [{**CHANNEL_EMBEDDED, "new": None}]},
        Connection,
    )
    assert conn.constraints == {"a": 1} and len(conn.channels) == 1
    assert decode({**USER, "id_token": None, "address": {"postcode": "1", "city": "X"}},
                  User).address == Address(postcode="1")


def test_null_optional_fields_mean_absent(decode: Decoder) -> None:
    tx = decode({**TRANSACTION, "notes": None, "remittance_information": None,
                 "source": None, "value_date": None}, Transaction)
    assert tx.notes is None and tx.remittance_information == () and tx.value_date is None
    channel = decode({**CHANNEL_EMBEDDED, "credentials": None}, Channel)
    assert channel.credentials == ()


# -- wrong shapes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "payload", "field"),
    [(cls, payload, field) for cls, payload, fields in MODELS for field in fields],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
def test_missing_required_field(cls: type[Any], payload: dict[str, Any], field: str) -> None:
    broken = {k: v for k, v in payload.items() if k != field}
    with pytest.raises(DecodeError) as one:
        structure(broken, cls)
    assert cls.__name__ in str(one.value) and f"$.{field}" in str(one.value)
    assert "missing" in str(one.value)
    with pytest.raises(DecodeError) as page:
        structure_list([payload, payload, broken], cls)
    assert cls.__name__ in str(page.value) and f"$[2].{field}" in str(page.value)


def test_missing_field_in_a_nested_model() -> None:
    broken = {**CONNECTION, "channels": [CHANNEL_REDIRECT, {**CHANNEL_EMBEDDED}]}
    del broken["channels"][1]["mode"]
    with pytest.raises(DecodeError, match=r"Connection.*channels.*mode"):
        structure(broken, Connection)
    with pytest.raises(DecodeError, match=r"Connection.*\$\[0\]\.channels.*mode"):
        structure_list([broken], Connection)


@pytest.mark.parametrize(
    ("cls", "payload", "field", "value"),
    [
        (Transaction, TRANSACTION, "id", 2433482741),
        (Transaction, TRANSACTION, "label", None),
        (Transaction, TRANSACTION, "amount", "-79.99"),
        (Transaction, TRANSACTION, "amount", True),
        (Transaction, TRANSACTION, "amount", None),
        (Transaction, TRANSACTION, "date", 1639954800.0),
        (Transaction, TRANSACTION, "date", "1639954800"),
        (Transaction, TRANSACTION, "date", True),
        (Transaction, TRANSACTION, "type", 3),
        (Transaction, TRANSACTION, "type", ["DEBIT"]),
        (Transaction, TRANSACTION, "status", None),
        (Transaction, TRANSACTION, "notes", 5),
        (Transaction, TRANSACTION, "value_date", "yesterday"),
        (Transaction, TRANSACTION, "remittance_information", "France Télécom"),
        (Transaction, TRANSACTION, "remittance_information", [1]),
        (Transaction, TRANSACTION, "source", "CARTE"),
        (Account, ACCOUNT, "balance", {"value": 1}),
        (Account, ACCOUNT, "usage", 1),
        (Account, ACCOUNT, "loan", []),
        (Account, ACCOUNT, "owner", {"name": None}),
        (Connection, CONNECTION, "auto_sync", "true"),
        (Connection, CONNECTION, "auto_sync", 1),
        (Connection, CONNECTION, "channels", {"0": CHANNEL_EMBEDDED}),
        (Connection, CONNECTION, "channels", [[]]),
        (Connection, CONNECTION, "constraints", "none"),
        (User, USER, "email_verified", "yes"),
        (User, USER, "address", "84300"),
        (Category, CATEGORY, "parent", {"id": "X"}),
    ],
)
def test_wrong_types_raise_decode_error(
    decode: Decoder, cls: type[Any], payload: dict[str, Any], field: str, value: Any
) -> None:
    with pytest.raises(DecodeError) as raised:
        decode({**payload, field: value}, cls)
    assert cls.__name__ in str(raised.value)
    assert field in str(raised.value)


@pytest.mark.parametrize("item", [None, 1, "x", [], [TRANSACTION]])
def test_items_that_are_not_objects(item: Any) -> None:
    with pytest.raises(DecodeError, match=r"expected an object.*@ \$"):
        structure(item, Transaction)
    with pytest.raises(DecodeError, match=r"expected an object.*@ \$\[1\]"):
        structure_list([TRANSACTION, item], Transaction)


@pytest.mark.parametrize("data", [None, {}, TRANSACTION, "[]", 3])
def test_a_page_must_be_an_array(data: Any) -> None:
    with pytest.raises(DecodeError, match="expected an array"):
        structure_list(data, Transaction)


def test_empty_page() -> None:
    assert structure_list([], Transaction) == []


def test_non_finite_numbers_are_rejected() -> None:
    for value in (float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity")):
        with pytest.raises(DecodeError, match="amount"):
            structure({**TRANSACTION, "amount": value}, Transaction)
        with pytest.raises(DecodeError, match="amount"):
            structure_list([{**TRANSACTION, "amount": value}], Transaction)


def test_decode_errors_are_not_bare_exceptions() -> None:
    for bad in ({}, {"id": 1}, [1], None):
        with pytest.raises(DecodeError) as raised:
            structure(bad, Transaction)
        assert isinstance(raised.value, OxlinError)
        with pytest.raises(DecodeError) as raised:
            structure_list([bad], Transaction)
        assert raised.value.__cause__ is None
        assert raised.value.__context__ is None or raised.value.__suppress_context__


# -- JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("without_orjson", [False, True])
def test_loads(monkeypatch: pytest.MonkeyPatch, without_orjson: bool) -> None:
    if without_orjson:
        monkeypatch.setattr(_convert, "orjson", None)
    data = loads(b'[{"a": -79.99, "b": 3, "c": "\xc3\xa9"}]')
    assert data[0]["b"] == 3 and data[0]["c"] == "é"
    assert type(data[0]["a"]) is (Decimal if without_orjson else float)
    tx = structure(loads(json.dumps(TRANSACTION).encode()), Transaction)
    assert tx.amount == Decimal("-79.99")


@pytest.mark.parametrize("without_orjson", [False, True])
@pytest.mark.parametrize(
    "body",
    [b"", b"<html>502 Bad Gateway</html>", b'{"a": ', b'{"a": NaN}', b'[Infinity]',
     b"\xff\xfe"],
)
def test_loads_rejects_what_is_not_json(
    monkeypatch: pytest.MonkeyPatch, without_orjson: bool, body: bytes
) -> None:
    if without_orjson:
        monkeypatch.setattr(_convert, "orjson", None)
    with pytest.raises(DecodeError, match="invalid JSON") as raised:
        loads(body)
    assert raised.value.excerpt is not None and len(raised.value.excerpt) <= 200


# -- models: equality, repr, immutability ----------------------------------------------


def test_decoded_objects_are_real_frozen_models() -> None:
    tx = structure(TRANSACTION, Transaction)
    (page_tx,) = structure_list([TRANSACTION], Transaction)
    for obj in (tx, page_tx):
        assert type(obj) is Transaction
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            obj.amount = Decimal(0)  # type: ignore[misc]
        assert not hasattr(obj, "__dict__")
    assert tx == page_tx and hash(tx) == hash(page_tx)
    assert attrs.evolve(tx, label="X").label == "X"
    assert pickle.loads(pickle.dumps(tx)) == tx
    assert copy.deepcopy(tx) == tx


def test_equality_is_by_value() -> None:
    a, b = structure(TRANSACTION, Transaction), structure(dict(TRANSACTION), Transaction)
    assert a == b and a is not b and len({a, b}) == 1
    assert a != structure({**TRANSACTION, "amount": -80}, Transaction)
    assert structure(ACCOUNT, Account) == structure(ACCOUNT, Account)


def test_reprs_are_readable() -> None:
    tx = structure(TRANSACTION, Transaction)
    text = repr(tx)
    assert text.startswith("Transaction(id='2433482741', account_id='63723418', ")
    assert "amount=Decimal('-79.99')" in text and "type=TransactionType.DEBIT" in text
    assert "notes=" not in text and "source=" not in text  # fields left at their default
    assert repr(Owner(name="X")) == "Owner(name='X')"
    assert repr(Address()) == "Address()"


def test_enums_behave_as_their_value() -> None:
    assert str(AccountType.CHECKINGS) == "CHECKINGS"
    assert f"{TransactionStatus.BOOKED}" == "BOOKED"
    assert f"{TransactionStatus.BOOKED:>8}" == "  BOOKED"
    assert TransactionType.DEBIT == "DEBIT" and isinstance(TransactionType.DEBIT, str)
    assert repr(ConnectionStatus.RUNNING) == "ConnectionStatus.RUNNING"
    assert ",".join([TransactionStatus.BOOKED, TransactionStatus.PENDING]) == "BOOKED,PENDING"


@pytest.mark.parametrize(
    ("enum_cls", "values"),
    [
        (ConnectionStatus, "RUNNING SUCCESS PARTIAL_SUCCESS FAILED CLOSED NONE"),
        (ChannelMode, "REDIRECT EMBEDDED"),
        (ChannelStatus, "EMPTY RUNNING SUCCESS PARTIAL_SUCCESS CLOSED TOKEN_EXPIRED "
                        "PASSWORD_CHANGE_REQUIRED CHALLENGE_REQUIRED USER_ACTION_REQUIRED "
                        "AUTH_FAILED"),
        (AccountType, "CHECKINGS SAVINGS LOAN CREDIT_CARD"),
        (AccountStatus, "MANUAL ACTIVE ERROR NOT_FOUND CLOSED SUSPENDED PENDING_CONSENT"),
        (AccountUsage, "PERSONAL PROFESSIONAL"),
        (TransactionOrigin, "ORIGINAL UPCOMING TRANSACTION RECURRING SCHEDULED"),
        (TransactionStatus, "BOOKED PENDING OTHER EXPIRED REJECTED CANCELLED REFUNDED"),
    ],
)
def test_enums_match_the_reference(enum_cls: Any, values: str) -> None:
    assert [m.value for m in enum_cls] == values.split()


def test_transaction_type_matches_the_reference() -> None:
    assert len(TransactionType) == 18 and TransactionType("POINT_OF_SALE").name == "POINT_OF_SALE"


# -- both decoding paths agree ---------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                max_size=3),
    max_leaves=5,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(MODELS[:-1]),
    st.data(),
)
def test_one_and_page_paths_agree(model: tuple[type[Any], dict[str, Any], list[str]],
                                  data: st.DataObject) -> None:
    cls, payload, _ = model
    broken = copy.deepcopy(payload)
    for _ in range(data.draw(st.integers(1, 2))):
        target = data.draw(st.sampled_from(list(_objects(broken))))
        key = data.draw(st.sampled_from(sorted(target) or ["new"]))
        if data.draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = data.draw(_json_values)
    # the diagnostic converter, which explains failures, must fail exactly when the
    # fast one does
    assert _fails(_convert.converter.structure, broken, cls) == _fails(
        _convert._diagnostic.structure, broken, cls
    )
    try:
        one = structure(broken, cls)
    except DecodeError as exc:
        assert cls.__name__ in str(exc) and "@ $" in str(exc)
        with pytest.raises(DecodeError, match=r"@ \$\[1\]"):
            structure_list([payload, broken], cls)
    else:
        assert structure_list([payload, broken], cls)[1] == one
        for a in attrs.fields(cls):
            value = getattr(one, a.name)
            if a.type in ("str", str):
                assert type(value) is str


def _objects(value: Any) -> Any:
    """Every JSON object in ``value``, nested ones included."""
    if isinstance(value, dict):
        yield value
        for v in value.values():
            yield from _objects(v)
    elif isinstance(value, list):
        for v in value:
            yield from _objects(v)


def _fails(decode: Callable[[Any, type[Any]], Any], obj: Any, cls: type[Any]) -> bool:
    try:
        decode(obj, cls)
    except _convert._FAILURES:
        return True
    return False


# -- errors ----------------------------------------------------------------------------


def _body(code: str, description: str = "something happened") -> bytes:
    return json.dumps({"error": code, "error_description": description, "id": "x"}).encode()


@pytest.mark.parametrize(
    ("status", "body", "cls", "code"),
    [
        (400, _body("BAD_PARAMETER"), BadRequestError, "BAD_PARAMETER"),
        (400, _body("invalid_request"), BadRequestError, "invalid_request"),
        (401, _body("invalid_token"), AuthenticationError, "invalid_token"),
        (401, _body("invalid_client"), AuthenticationError, "invalid_client"),
        (403, _body("insufficient_scope"), PermissionDeniedError, "insufficient_scope"),
        (404, _body("RESOURCE_UNKNOWN"), NotFoundError, "RESOURCE_UNKNOWN"),
        (409, _body("CONFLICT"), ConflictError, "CONFLICT"),
        (429, _body("TOO_MANY_REQUESTS"), RateLimitError, "TOO_MANY_REQUESTS"),
        (500, _body("INTERNAL_ERROR"), InternalServerError, "INTERNAL_ERROR"),
        (503, _body("SERVICE_UNAVAILABLE"), ServiceUnavailableError, "SERVICE_UNAVAILABLE"),
        (502, _body("BAD_GATEWAY"), ServerError, "BAD_GATEWAY"),
        (504, b"", ServerError, None),
        # the status decides; the code only narrows it
        (400, _body("invalid_token"), BadRequestError, "invalid_token"),
        (502, _body("SERVICE_UNAVAILABLE"), ServiceUnavailableError, "SERVICE_UNAVAILABLE"),
        (410, _body("RESOURCE_UNKNOWN"), NotFoundError, "RESOURCE_UNKNOWN"),
        (418, _body("TEAPOT"), APIError, "TEAPOT"),
        (405, b"", APIError, None),
        # bodies that are not the documented JSON still map by status
        (502, b"<html><body>502 Bad Gateway</body></html>", ServerError, None),
        (404, b"<html>Not Found</html>", NotFoundError, None),
        (429, b"slow down", RateLimitError, None),
        (500, b'["INTERNAL_ERROR"]', InternalServerError, None),
        (401, b'{"error": 401}', AuthenticationError, None),
        (400, b"\xff\xfe", BadRequestError, None),
    ],
)
def test_api_error_classification(status: int, body: bytes, cls: type[APIError],
                                  code: str | None) -> None:
    error = api_error_from_response(status, body, request_id="rid-1", method="GET",
                                    url="https://sandbox-api.oxlin.io/v2.1/accounts",
                                    retry_after=None)
    assert type(error) is cls
    assert error.status == status and error.code == code and error.request_id == "rid-1"
    assert error.method == "GET" and error.url == "https://sandbox-api.oxlin.io/v2.1/accounts"
    assert isinstance(error, APIError) and isinstance(error, OxlinError)
    if code is None:
        assert error.description is None


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, _body("invalid_grant"), InvalidGrantError),
        (401, _body("invalid_client"), InvalidClientError),
        (400, _body("invalid_client"), InvalidClientError),
        (400, _body("invalid_scope"), OAuthError),
        (400, _body("unsupported_grant_type"), OAuthError),
        (400, _body("invalid_request"), OAuthError),
        (401, b"<html>denied</html>", OAuthError),
        (429, _body("TOO_MANY_REQUESTS"), RateLimitError),
        (500, b"<html>oops</html>", InternalServerError),
        (503, b"", ServiceUnavailableError),
        (502, _body("invalid_grant"), ServerError),
    ],
)
def test_oauth_error_classification(status: int, body: bytes, cls: type[APIError]) -> None:
    error = api_error_from_response(status, body, request_id=None, method="POST",
                                    url="https://sandbox-auth.oxlin.io/token",
                                    retry_after=None, oauth=True)
    assert type(error) is cls


def test_error_hierarchy() -> None:
    assert issubclass(InternalServerError, ServerError)
    assert issubclass(ServiceUnavailableError, ServerError)
    assert issubclass(InvalidGrantError, OAuthError) and issubclass(InvalidClientError, OAuthError)
    assert issubclass(OAuthError, APIError) and issubclass(RateLimitError, APIError)
    assert issubclass(RequestTimeoutError, TransportError)
    assert issubclass(ArgumentError, ValueError) and issubclass(ArgumentError, OxlinError)
    for cls in (APIError, TransportError, DecodeError, ArgumentError):
        assert issubclass(cls, OxlinError)
    assert ox.NotFoundError is NotFoundError and ox.parse_callback_url is parse_callback_url


def test_api_error_message() -> None:
    error = api_error_from_response(
        404, _body("RESOURCE_UNKNOWN", "Unknown account 123"), request_id="abc",
        method="GET", url=yarl.URL("https://sandbox-api.oxlin.io/v2.1/accounts/123"),
        retry_after=None,
    )
    assert str(error) == (
        "404 RESOURCE_UNKNOWN: Unknown account 123 "
        "(GET https://sandbox-api.oxlin.io/v2.1/accounts/123, request_id=abc)"
    )
    assert error.description == "Unknown account 123"
    bare = api_error_from_response(502, b"<html/>", retry_after=None)
    assert str(bare) == "502"
    assert str(NotFoundError(404, "RESOURCE_UNKNOWN", method="GET", url="/v2.1/accounts/1")) == (
        "404 RESOURCE_UNKNOWN (GET /v2.1/accounts/1)"
    )


def test_retry_after() -> None:
    limited = api_error_from_response(429, _body("TOO_MANY_REQUESTS", "Slow down"),
                                      request_id="r", method="GET", url="/v2.1/accounts",
                                      retry_after=30.0)
    assert isinstance(limited, RateLimitError) and limited.retry_after == 30.0
    assert str(limited) == (
        "429 TOO_MANY_REQUESTS: Slow down (GET /v2.1/accounts, request_id=r, retry_after=30s)"
    )
    busy = api_error_from_response(503, b"", retry_after=1.5)
    assert isinstance(busy, ServiceUnavailableError) and busy.retry_after == 1.5
    assert api_error_from_response(503, b"", retry_after=None).retry_after is None  # type: ignore[attr-defined]
    assert not hasattr(api_error_from_response(500, b"", retry_after=3), "retry_after")


def test_error_messages_hold_no_secret() -> None:
    error = api_error_from_response(401, _body("invalid_client"), retry_after=None,
                                    method="POST", url="https://id:s3cret@auth.example/token",
                                    oauth=True)
    assert "s3cret" not in str(error) and "s3cret" not in repr(error)
    assert error.url == "https://auth.example/token"
    transport = TransportError("connection refused", method="GET",
                               url="https://u:pw@api.example/v2.1/users/me")
    assert "pw" not in str(transport) and transport.url == "https://api.example/v2.1/users/me"


def test_long_descriptions_are_cut() -> None:
    error = api_error_from_response(400, _body("BAD_PARAMETER", "x" * 5000), retry_after=None)
    assert error.description is not None and len(error.description) == 500


def test_decode_error() -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.secret-part"
    body = ('{"access_token": "' + token + '", "token_type": "Bearer", "refresh_token": '
            '"rt_5Zg7m1QxY0n8uCkq3vBf", "expires_in": "3600"' + " " * 300 + "}").encode()
    error = DecodeError("POST /token: no expires_in", status=200, request_id="rid", body=body)
    assert error.excerpt is not None and len(error.excerpt) <= 200
    assert token not in error.excerpt and "rt_5Zg7" not in error.excerpt
    assert '"token_type": "Bearer"' in error.excerpt
    assert str(error) == "POST /token: no expires_in (status 200, request_id=rid)"
    assert token not in repr(error)
    cut = DecodeError("cut", body=b'{"access_token": "eyJhbGciOiJSUzI1NiJ9.abc')
    assert cut.excerpt == '{"access_token": "***'
    form = DecodeError("form", body="grant_type=password&password=hunter2&username=a")
    assert form.excerpt is not None and "hunter2" not in form.excerpt
    later = DecodeError("bad shape")
    assert str(later) == "bad shape" and later.excerpt is None
    later.status, later.request_id = 200, "r2"
    assert str(later) == "bad shape (status 200, request_id=r2)"


def test_argument_error() -> None:
    error = ArgumentError("limit", "must be between 1 and 500, got 0")
    assert isinstance(error, ValueError) and error.argument == "limit"
    assert str(error) == "invalid argument 'limit': must be between 1 and 500, got 0"


def test_transport_errors() -> None:
    error = RequestTimeoutError("the request timed out", method="GET",
                                url="https://sandbox-api.oxlin.io/v2.1/accounts")
    assert isinstance(error, TransportError)
    assert (error.method, error.url) == ("GET", "https://sandbox-api.oxlin.io/v2.1/accounts")
    assert str(error) == "the request timed out (GET https://sandbox-api.oxlin.io/v2.1/accounts)"


@pytest.mark.parametrize(
    "error",
    [
        api_error_from_response(404, _body("RESOURCE_UNKNOWN"), request_id="r", method="GET",
                                url="/x", retry_after=None),
        api_error_from_response(429, b"", retry_after=2.0),
        api_error_from_response(400, _body("invalid_grant"), retry_after=None, oauth=True),
        DecodeError("bad", status=200, request_id="r", body=b"{}"),
        ArgumentError("page", "must be >= 1"),
        TransportError("reset", method="GET", url="https://x.example/"),
        RequestTimeoutError("slow", method="POST", url="https://x.example/token"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_errors_pickle_and_copy(error: OxlinError) -> None:
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(clone) is type(error)
        assert str(clone) == str(error) and vars(clone) == vars(error)


# -- widget ----------------------------------------------------------------------------


def _session(link: str = LINK) -> WidgetSession:
    return WidgetSession(session_id=SESSION_ID, add_connection_link=link,
                         links={"add_connection": link})


def test_add_connection_url() -> None:
    url = _session().add_connection_url(
        redirect_uri="https://app.example/callback?state=a b&x=1#frag",
        locale="fr_FR",
        auto_sync=False,
        wait_sync_end=True,
        countries=["FR", "BE"],
        font_color="#ff0000",
        expected_account_type="PAYMENT",
        cancel_url=None,
    )
    assert url.startswith(LINK + "&redirect_uri=https%3A%2F%2Fapp.example%2Fcallback%3F")
    assert "&auto_sync=false&" in url and "&wait_sync_end=true&" in url
    assert "font_color=%23ff0000" in url and "countries=FR%2CBE" in url
    assert "cancel_url" not in url and " " not in url
    query = yarl.URL(url).query
    assert query["session_id"] == SESSION_ID
    assert query["redirect_uri"] == "https://app.example/callback?state=a b&x=1#frag"
    assert query["locale"] == "fr_FR" and query["countries"] == "FR,BE"
    assert query["font_color"] == "#ff0000" and query["expected_account_type"] == "PAYMENT"
    assert list(query) == ["session_id", "redirect_uri", "locale", "auto_sync", "wait_sync_end",
                           "countries", "font_color", "expected_account_type"]


def test_add_connection_url_minimal() -> None:
    url = _session().add_connection_url(redirect_uri="http://localhost:8080/cb")
    assert url == LINK + "&redirect_uri=http%3A%2F%2Flocalhost%3A8080%2Fcb"


@pytest.mark.parametrize(
    "redirect_uri",
    ["/callback", "callback", "ftp://app.example/cb", "javascript:alert(1)", "https://",
     "", "mailto:a@b.example", 42, None],
)
def test_add_connection_url_needs_an_absolute_http_redirect(redirect_uri: Any) -> None:
    with pytest.raises(ArgumentError) as raised:
        _session().add_connection_url(redirect_uri=redirect_uri)
    assert raised.value.argument == "redirect_uri" and "redirect_uri" in str(raised.value)


def test_add_connection_url_rejects_bad_parameters() -> None:
    with pytest.raises(ArgumentError) as raised:
        _session().add_connection_url(redirect_uri="https://a.example/", session_id="other")
    assert raised.value.argument == "session_id"
    with pytest.raises(ArgumentError) as raised:
        _session().add_connection_url(redirect_uri="https://a.example/", font={"a": 1})
    assert raised.value.argument == "font"


def test_add_connection_url_enum_values() -> None:
    url = _session().add_connection_url(redirect_uri="https://a.example/",
                                        expected_account_type=AccountType.CHECKINGS)
    assert url.endswith("&expected_account_type=CHECKINGS")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://app.example/cb?status=success&result=created&connection_id=4422323",
         AddConnectionResult(status="success", result="created", connection_id="4422323")),
        ("https://app.example/cb?state=xyz&status=success&result=created&connection_id=7",
         AddConnectionResult(status="success", result="created", connection_id="7")),
        ("https://app.example/cb?status=failure&error=auth_failed",
         AddConnectionResult(status="failure", error="auth_failed")),
        ("http://localhost/cb?status=failure&error=cancelled#x",
         AddConnectionResult(status="failure", error="cancelled")),
        ("https://app.example/cb?status=failure&error=server_error&connection_id=",
         AddConnectionResult(status="failure", error="server_error")),
    ],
)
def test_parse_callback_url(url: str, expected: AddConnectionResult) -> None:
    result = parse_callback_url(url)
    assert result == expected == AddConnectionResult.parse_callback_url(url)
    assert result.succeeded is (expected.status == "success")


@pytest.mark.parametrize("url", ["https://app.example/cb", "https://app.example/cb?status=",
                                 "https://app.example/cb?error=x", 42])
def test_parse_callback_url_needs_a_status(url: Any) -> None:
    with pytest.raises(ArgumentError) as raised:
        parse_callback_url(url)
    assert raised.value.argument == "url"
