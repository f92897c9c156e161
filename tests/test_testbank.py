"""The Linxo test-bank format (docs/oxlin-api §13.1) and the objects it becomes (§13.3).

Ground truth is read straight from the emulator state; no server is involved.
"""

from __future__ import annotations

import calendar
import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from oxlin_async.testing import _testbank as tb
from oxlin_async.testing._records import ACCOUNT_TYPES, Account, Connection, Transaction
from oxlin_async.testing._state import EmulatorState

T = 1_795_000_000  # the sync time: 2026-11-18T08:26:40Z
PARIS = ZoneInfo("Europe/Paris")
BUNDLED_DIR = Path(tb.__file__).parent / "testbank"
CHANNELS = ("EMBEDDED", "REDIRECT")


def utc(*parts: int) -> int:
    return calendar.timegm((*parts, 0, 0, 0)[:6])


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState(clock=lambda: float(T))


@pytest.fixture
def user_id(state: EmulatorState) -> int:
    return state.create_user("someone@example.com", "secret").id


def apply(state: EmulatorState, user_id: int, bank: tb.TestBank | str,
          channel: str = "EMBEDDED") -> tuple[Connection, list[Account], list[Transaction]]:
    if isinstance(bank, str):
        bank = tb.parse_testbank(bank)
    connection = tb.apply_testbank(state, user_id, bank, channel=channel)
    data = state.data(user_id)
    accounts = [a for a in data.accounts.values() if a.connection_id == connection.id]
    txs = [t for a in accounts for t in data.transactions[a.id]]
    return connection, accounts, txs


def is_paris_midnight(timestamp: int) -> bool:
    return datetime.datetime.fromtimestamp(timestamp, PARIS).time() == datetime.time()


# bundled files --------------------------------------------------------------------------

def test_bundled_names_match_the_files_on_disk() -> None:
    on_disk = sorted(str(p.relative_to(BUNDLED_DIR).with_suffix("")).replace("\\", "/")
                     for p in BUNDLED_DIR.glob("*/*.txt"))
    assert tb.bundled_testbanks() == on_disk
    assert len(on_disk) == 25
    assert tb.DEFAULT_TESTBANK in on_disk
    assert (BUNDLED_DIR / "LICENSE").is_file()


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("name", tb.bundled_testbanks())
def test_every_bundled_file_parses_and_applies(state: EmulatorState, user_id: int,
                                               name: str, channel: str) -> None:
    bank = tb.load_testbank(name)
    assert (bank.login, bank.password) == ("dev", "dev")
    kept_types = tb.REDIRECT_ACCOUNT_TYPES if channel == "REDIRECT" else ACCOUNT_TYPES
    kept = [a for a in bank.accounts if tb.ACCOUNT_TYPE_MAP.get(a.account_type) in kept_types]

    connection, accounts, txs = apply(state, user_id, bank, channel)

    assert connection.status == "SUCCESS"
    assert [a.name for a in accounts] == [a.name or a.number for a in kept]
    assert len(txs) == sum(len(a.transactions) for a in kept)
    assert [t.id for t in txs] == sorted(t.id for t in txs)
    for tx in txs:
        assert is_paris_midnight(tx.date)
        assert tx.date == tx.value_date == tx.booking_date
        assert tx.import_date == tx.last_update_date == T
        tx.to_json()
    for account in accounts:
        assert account.type in kept_types
        account.to_json()
    connection.to_json()


def test_unknown_account_type_is_skipped_with_its_transactions(
        state: EmulatorState, user_id: int) -> None:
    bank = tb.load_testbank("fr/account_type_not_supported")
    assert [a.account_type for a in bank.accounts] == ["unknown"] * 3
    assert sum(len(a.transactions) for a in bank.accounts) == 13
    connection, accounts, txs = apply(state, user_id, bank)
    assert (accounts, txs) == ([], [])
    assert connection.id in state.data(user_id).connections


def test_odd_dates_in_the_bundled_files_are_read_as_written() -> None:
    bank = tb.load_testbank("fr/currency_not_supported")
    dates = [t.date for t in bank.accounts[0].transactions]
    assert dates[0] == datetime.date(2024, 5, 5)
    assert datetime.date(2027, 3, 28) in dates  # after the balance date: kept as is
    assert bank.accounts[0].currency == "USD"


# field mapping --------------------------------------------------------------------------

def test_harry_potter_file_fields() -> None:
    bank = tb.load_testbank("fr/harry_potter.txt")
    assert (bank.login, bank.password, bank.owner) == ("dev", "dev", "HARRY POTTER")
    [account] = bank.accounts
    assert account == tb.TestBankAccount(
        uid="dnqg2lCcXocR", number="account 01", balance_date=datetime.date(2026, 8, 21),
        balance_cents=136177, account_type="Checkings", acceptable_uid_regexp="",
        match_existing=False, owner="HARRY POTTER", name="account 01", payment_source="",
        payment_destination="", iban="FR7630003377880788728491705", currency="EUR", bic="",
        transactions=account.transactions)
    assert len(account.transactions) == 66
    assert account.transactions[:3] == [
        tb.TestBankTransaction(-10167, datetime.date(2026, 5, 25),
                               "PRELEVEMENT HARRY POTTER PRELEVEMENT CARTE ZERO FAST3280420323"),
        tb.TestBankTransaction(-15000, datetime.date(2026, 5, 25), account.transactions[1].label),
        tb.TestBankTransaction(-7520, datetime.date(2026, 5, 26), account.transactions[2].label),
    ]
    assert account.transactions[7].amount_cents == 90000


def test_harry_potter_applied_embedded(state: EmulatorState, user_id: int) -> None:
    connection, [account], txs = apply(state, user_id, tb.load_testbank(tb.DEFAULT_TESTBANK))
    provider = connection.provider_id
    assert connection.to_json() == {
        "id": str(connection.id), "user_id": str(user_id), "provider_id": provider,
        "name": "Linxo Test Bank", "status": "SUCCESS", "creation_date": T,
        "auto_sync": True, "consent_per_account": False,
        "logo_url": f"https://static.oxlin.io/common/pictures/providers_logos/{provider}.png",
        "owner": {"name": "HARRY POTTER"},
        "channels": [
            {"channel_definition_id": provider + "00", "mode": "EMBEDDED", "status": "SUCCESS",
             "account_types": ["CHECKINGS", "SAVINGS", "LOAN", "CREDIT_CARD"],
             "channel_definition_unavailable": False, "last_success_date": T,
             "last_end_date": T},
            {"channel_definition_id": provider + "01", "mode": "REDIRECT", "status": "EMPTY",
             "account_types": ["CHECKINGS", "CREDIT_CARD"],
             "channel_definition_unavailable": False, "credentials": [],
             "expires": T + 90 * 86400},
        ],
    }
    assert account.to_json() == {
        "id": str(account.id), "connection_id": str(connection.id), "name": "account 01",
        "type": "CHECKINGS", "status": "ACTIVE", "currency": "EUR", "balance": 1361.77,
        "balance_date": utc(2026, 8, 20, 22), "creation_date": T, "usage": "PERSONAL",
        "iban": "FR7630003377880788728491705", "account_number": "account 01",
        "owner": {"name": "HARRY POTTER"}, "last_channel_definition_id": provider + "00",
    }
    label = "PRELEVEMENT HARRY POTTER PRELEVEMENT CARTE ZERO FAST3280420323"
    assert txs[0].to_json() == {
        "id": str(txs[0].id), "account_id": str(account.id), "amount": -101.67,
        "currency": "EUR", "label": label, "type": "DEBIT", "origin": "TRANSACTION",
        "status": "BOOKED", "category_id": "UNCATEGORIZED",
        "date": utc(2026, 5, 24, 22), "value_date": utc(2026, 5, 24, 22),
        "booking_date": utc(2026, 5, 24, 22), "import_date": T, "last_update_date": T,
        "remittance_information": [label],
    }
    assert txs[1].to_json()["amount"] == -150
    assert txs[2].to_json()["amount"] == -75.2
    assert (txs[7].amount_cents, txs[7].type) == (90000, "CREDIT")
    # Ids follow the file; the default sort (import_date, then id descending) reverses it.
    assert [t.id for t in txs] == list(range(txs[0].id, txs[0].id + 66))


def test_harry_potter_applied_redirect(state: EmulatorState, user_id: int) -> None:
    bank = tb.load_testbank(tb.DEFAULT_TESTBANK)
    connection = tb.apply_testbank(state, user_id, bank, channel="REDIRECT", auto_sync=False,
                                   consent_per_account=True)
    embedded, redirect = connection.channels
    assert (embedded.status, redirect.status) == ("EMPTY", "SUCCESS")
    assert redirect.last_success_date == redirect.last_end_date == T
    assert redirect.expires == T + 90 * 86400
    assert (connection.auto_sync, connection.consent_per_account) == (False, True)
    [account] = state.data(user_id).accounts.values()
    assert account.last_channel_definition_id == redirect.channel_definition_id


def test_english_file_keeps_its_currency(state: EmulatorState, user_id: int) -> None:
    _, [account], txs = apply(state, user_id, tb.load_testbank("en/james_watson"))
    assert (account.currency, account.balance_cents) == ("GBP", -36205)
    assert account.iban == "GB05GQKQ13065644352477"
    assert account.owner_name == "JAMES WATSON"
    assert {t.currency for t in txs} == {"GBP"}
    assert all(is_paris_midnight(t.date) for t in txs)


def test_redirect_keeps_only_checking_and_credit_card_accounts(
        state: EmulatorState, user_id: int) -> None:
    bank = tb.load_testbank("es/raquel_murillo")
    assert [a.account_type for a in bank.accounts] == ["Checkings", "CreditCard", "Savings"]
    _, accounts, txs = apply(state, user_id, bank, "REDIRECT")
    assert [a.type for a in accounts] == ["CHECKINGS", "CREDIT_CARD"]
    assert len(txs) == len(bank.accounts[0].transactions) + len(bank.accounts[1].transactions)
    # Skipped lines use no ids: they stay consecutive.
    assert accounts[1].id == accounts[0].id + 1
    assert [t.id for t in txs] == list(range(txs[0].id, txs[0].id + len(txs)))

    _, accounts, _ = apply(state, user_id, bank, "EMBEDDED")
    assert [a.type for a in accounts] == ["CHECKINGS", "CREDIT_CARD", "SAVINGS"]
    _, accounts, _ = apply(state, user_id, tb.load_testbank("fr/no_checking_account"),
                           "REDIRECT")
    assert accounts == []


def test_ids_follow_file_order_across_accounts_and_syncs(
        state: EmulatorState, user_id: int) -> None:
    bank = tb.load_testbank("fr/hermione_granger")
    first, accounts, txs = apply(state, user_id, bank)
    assert [a.id for a in accounts] == sorted(a.id for a in accounts)
    expected = [(t.label, t.amount_cents) for a in bank.accounts for t in a.transactions]
    assert [(t.label, t.amount_cents) for t in sorted(txs, key=lambda t: t.id)] == expected
    second, again, _ = apply(state, user_id, bank)
    assert second.id > first.id and again[0].id > accounts[-1].id


def test_owner_fallbacks(state: EmulatorState, user_id: int) -> None:
    connection, [account], _ = apply(state, user_id, tb.load_testbank("fr/no_owner_name"))
    assert connection.owner_name is None and "owner" not in connection.to_json()
    assert account.owner_name is None and "owner" not in account.to_json()

    text = ("CREDENTIALS_OWNER|THE HOLDER\n"
            "ACCOUNT|u1|n1|01/02/26|1|Checkings||false||acc1\n"
            "ACCOUNT|u2|n2|01/02/26|1|Checkings||false|SOMEONE ELSE|acc2\n")
    connection, accounts, _ = apply(state, user_id, text)
    assert connection.owner_name == "THE HOLDER"
    assert [a.owner_name for a in accounts] == ["THE HOLDER", "SOMEONE ELSE"]

    _, [account], _ = apply(state, user_id, "ACCOUNT|u|n|01/02/26|1|Checkings\n")
    assert account.owner_name is None


def test_empty_fields_fall_back_or_are_left_out(state: EmulatorState, user_id: int) -> None:
    _, [account], _ = apply(state, user_id, "ACCOUNT|uid|12345|01/02/26|-3.5|Savings\n")
    body = account.to_json()
    assert "iban" not in body
    assert (body["name"], body["account_number"], body["currency"]) == ("12345", "12345", "EUR")
    assert (body["balance"], body["type"]) == (-3.5, "SAVINGS")
    assert body["balance_date"] == utc(2026, 1, 31, 23)  # winter: UTC+1


def test_paris_midnight() -> None:
    assert tb.paris_midnight(datetime.date(2021, 12, 20)) == 1639954800  # the README example
    assert tb.paris_midnight(datetime.date(2026, 5, 25)) == utc(2026, 5, 24, 22)
    # The days on which the clocks change still start at midnight.
    assert tb.paris_midnight(datetime.date(2026, 3, 29)) == utc(2026, 3, 28, 23)
    assert tb.paris_midnight(datetime.date(2026, 10, 25)) == utc(2026, 10, 24, 22)


# parsing rules ---------------------------------------------------------------------------

def test_lenient_syntax() -> None:
    text = ("\ufeffCREDENTIALS|me|pw|extra\r\n"
            "\r\n"
            "   \n"
            "BEHAVIOUR|challenge|whatever\n"
            "ACCOUNT|u|n|1/2/26|0.5|Loans|^u.*$|TRUE|O|N|S|D|FR76|CHF|BIC0|more|fields\n"
            "TRANSACTION|-150|05/05/24|label with | in it\n"
            "TRANSACTION|+3|31/12/99\n"
            "TRANSACTION|2.10|29/02/28|  spaces kept  \n")
    bank = tb.parse_testbank(text)
    assert (bank.login, bank.password, bank.owner) == ("me", "pw", None)
    [account] = bank.accounts
    assert (account.balance_date, account.balance_cents) == (datetime.date(2026, 2, 1), 50)
    assert (account.acceptable_uid_regexp, account.match_existing) == ("^u.*$", True)
    assert (account.payment_source, account.payment_destination) == ("S", "D")
    assert (account.iban, account.currency, account.bic) == ("FR76", "CHF", "BIC0")
    assert account.transactions == [
        tb.TestBankTransaction(-15000, datetime.date(2024, 5, 5), "label with "),
        tb.TestBankTransaction(300, datetime.date(2099, 12, 31), ""),
        tb.TestBankTransaction(210, datetime.date(2028, 2, 29), "  spaces kept  "),
    ]


def test_defaults_without_credentials() -> None:
    assert tb.parse_testbank("") == tb.TestBank("dev", "dev", None, [])
    assert tb.parse_testbank("CREDENTIALS_OWNER|\n").owner is None


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("TRANSACTION|-1|01/01/26|x", 1, "TRANSACTION before any ACCOUNT"),
    ("CREDENTIALS|a|b\n\nACCOUNT|u|n|32/01/26|1|Checkings", 3, "bad balance date '32/01/26'"),
    ("ACCOUNT|u|n|2026-01-01|1|Checkings", 1, "bad balance date '2026-01-01'"),
    ("ACCOUNT|u|n|01/01/26|1,50|Checkings", 1, "bad balance '1,50'"),
    ("ACCOUNT|u|n|01/01/26", 1, "bad balance ''"),
    ("ACCOUNT|u|n|01/01/26|1|Checkings||maybe", 1, "bad match_existing 'maybe'"),
    ("ACCOUNT|u|n|01/01/26|1|Checkings\nTRANSACTION|1.234|01/01/26|x", 2,
     "bad amount '1.234'"),
    ("ACCOUNT|u|n|01/01/26|1|Checkings\nTRANSACTION|1e3|01/01/26|x", 2, "bad amount '1e3'"),
    ("ACCOUNT|u|n|01/01/26|1|Checkings\nTRANSACTION|NaN|01/01/26|x", 2, "bad amount 'NaN'"),
    ("ACCOUNT|u|n|01/01/26|1|Checkings\nTRANSACTION|5|29/02/27|x", 2, "bad date '29/02/27'"),
    ("ACCOUNT|u|n|01/01/26|1|Checkings\nTRANSACTION|5", 2, "bad date ''"),
])
def test_errors_name_the_source_and_line(text: str, line: int, problem: str) -> None:
    with pytest.raises(tb.TestBankError) as info:
        tb.parse_testbank(text, source="bank.txt")
    assert str(info.value).startswith(f"bank.txt, line {line}: {problem}")
    assert (info.value.source, info.value.line) == ("bank.txt", line)
    assert isinstance(info.value, ValueError)


# loading ---------------------------------------------------------------------------------

def test_load_by_name_or_path(tmp_path: Path) -> None:
    by_name = tb.load_testbank("fr/harry_potter")
    assert tb.load_testbank("fr/harry_potter.txt") == by_name
    assert tb.load_testbank(BUNDLED_DIR / "fr" / "harry_potter.txt") == by_name

    path = tmp_path / "mine.txt"
    path.write_text("CREDENTIALS|x|y\nACCOUNT|u|n|01/01/26|1|Checkings\nTRANSACTION|x",
                    encoding="utf-8")
    with pytest.raises(tb.TestBankError, match=r"mine\.txt, line 3: bad amount 'x'"):
        tb.load_testbank(path)
    path.write_text("CREDENTIALS|x|y\n", encoding="utf-8")
    assert tb.load_testbank(str(path)).login == "x"

    with pytest.raises(FileNotFoundError, match="fr/harry_potter"):
        tb.load_testbank("fr/no_such_bank")


def test_unknown_channel_is_refused(state: EmulatorState, user_id: int) -> None:
    with pytest.raises(ValueError, match="channel"):
        tb.apply_testbank(state, user_id, tb.TestBank(), channel="MAGIC")
