"""Models decoded from JSON: fields, exact amounts, unknown enum values and extra fields,
equality, repr and immutability (no network)."""

from __future__ import annotations

import copy
import datetime as dt
import json
import pickle
from decimal import Decimal
from typing import Any

import attrs
import orjson
import pytest
from _payloads import (
    ACCOUNT,
    CATEGORY,
    CHANNEL_EMBEDDED,
    CHANNEL_REDIRECT,
    CONNECTION,
    LINK,
    MODELS,
    PARSERS,
    SESSION_ID,
    TRANSACTION,
    USER,
    USER_FULL,
    UTC,
    WIDGET,
    Decoder,
    both_parsers,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from oxlin_async import _gen
from oxlin_async._convert import loads, structure, structure_list
from oxlin_async.errors import (
    DecodeError,
)
from oxlin_async.models import (
    Account,
    AccountStatus,
    AccountType,
    AccountUsage,
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
)

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
