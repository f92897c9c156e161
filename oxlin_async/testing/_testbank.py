"""The Linxo test-bank file format (docs/oxlin-api §13) and how the emulator turns a file into data.

`parse_testbank` reads the text into plain records, `load_testbank` finds a file on disk or
among the bundled Linxo files, and `apply_testbank` creates the connection, accounts and
transactions that a successful widget run produces (§13.3).
"""

from __future__ import annotations

import datetime
import functools
import os
import re
import sys
from decimal import Decimal
from importlib import resources
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import attrs

from ._records import ACCOUNT_TYPES, PARIS, Account, Channel, Connection, Transaction
from ._state import EmulatorState

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

__all__ = [
    "DEFAULT_TESTBANK",
    "PROVIDER_ID",
    "TestBank",
    "TestBankAccount",
    "TestBankError",
    "TestBankTransaction",
    "apply_testbank",
    "bundled_testbanks",
    "load_testbank",
    "paris_midnight",
    "parse_testbank",
]

#: The emulator's provider id for the test bank (tests must not hard-code it).
PROVIDER_ID = "9999"
#: Name of the bundled file (for `load_testbank`, not file text) used when the widget
#: gets no configuration.
DEFAULT_TESTBANK = "fr/harry_potter"
CONNECTION_NAME = "Linxo Test Bank"
CHANNEL_MODES = ("EMBEDDED", "REDIRECT")
REDIRECT_ACCOUNT_TYPES = ("CHECKINGS", "CREDIT_CARD")
#: File account type -> API account type; any other value skips the account (Assumed).
ACCOUNT_TYPE_MAP = {"Checkings": "CHECKINGS", "Savings": "SAVINGS", "Loans": "LOAN",
                    "CreditCard": "CREDIT_CARD"}
CONSENT_SECONDS = 90 * 86_400

_PARIS = ZoneInfo(PARIS)
_DATE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{2}|[0-9]{4})")
# Decimal alone would also take "1e3", "NaN" or "1.234".
_AMOUNT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]{1,2})?")


@functools.lru_cache(maxsize=4096)
def paris_midnight(d: datetime.date) -> int:
    """Local midnight of a calendar day in Europe/Paris, in epoch seconds (§3.1)."""
    # DST changes happen at 2 or 3 a.m., so midnight always exists and is unambiguous.
    return int(datetime.datetime.combine(d, datetime.time(), _PARIS).timestamp())


class TestBankError(ValueError):
    """A test-bank file that cannot be read; the message names the source and line."""

    __test__ = False  # a library class, not a pytest test class despite its name

    def __init__(self, source: str, line: int, problem: str) -> None:
        super().__init__(f"{source}, line {line}: {problem}")
        self.source = source
        self.line = line
        self.problem = problem


@attrs.define
class TestBankTransaction:
    __test__ = False

    amount_cents: int
    date: datetime.date
    label: str


@attrs.define
class TestBankAccount:
    """One ACCOUNT line; text fields are kept as written, "" when empty."""

    __test__ = False

    uid: str
    number: str
    balance_date: datetime.date
    balance_cents: int
    account_type: str
    acceptable_uid_regexp: str = ""
    match_existing: bool = False
    owner: str = ""
    name: str = ""
    payment_source: str = ""
    payment_destination: str = ""
    iban: str = ""
    currency: str = ""
    bic: str = ""
    transactions: list[TestBankTransaction] = attrs.Factory(list)


@attrs.define
class TestBank:
    """A parsed file. `owner` is None when CREDENTIALS_OWNER is missing or empty."""

    __test__ = False

    login: str = "dev"
    password: str = "dev"
    owner: str | None = None
    accounts: list[TestBankAccount] = attrs.Factory(list)


# parsing ------------------------------------------------------------------------------

class _Line:
    """The fields of one line, padded on demand since trailing empty fields may be omitted."""

    def __init__(self, source: str, number: int, fields: list[str]) -> None:
        self.source = source
        self.number = number
        self.fields = fields

    def error(self, problem: str) -> TestBankError:
        return TestBankError(self.source, self.number, problem)

    def text(self, index: int) -> str:
        return self.fields[index] if index < len(self.fields) else ""

    def date(self, index: int, what: str) -> datetime.date:
        raw = self.text(index).strip()
        match = _DATE.fullmatch(raw)
        if match is None:
            raise self.error(f"bad {what} {raw!r} (expected DD/MM/YY)")
        day, month, year = (int(part) for part in match.groups())
        try:
            return datetime.date(year if year >= 100 else 2000 + year, month, day)
        except ValueError:
            raise self.error(f"bad {what} {raw!r} (no such day)") from None

    def cents(self, index: int, what: str) -> int:
        raw = self.text(index).strip()
        if _AMOUNT.fullmatch(raw) is None:
            raise self.error(f"bad {what} {raw!r} (expected a decimal number with a point "
                             "and at most 2 decimals)")
        return int(Decimal(raw) * 100)

    def flag(self, index: int, what: str) -> bool:
        raw = self.text(index).strip()
        if raw.lower() not in ("", "true", "false"):
            raise self.error(f"bad {what} {raw!r} (expected true or false)")
        return raw.lower() == "true"


def parse_testbank(text: str, *, source: str = "<string>") -> TestBank:
    """Parse a test-bank file; raise `TestBankError` naming the line of the first problem."""
    bank = TestBank()
    account: TestBankAccount | None = None
    # Not splitlines(): it also splits on characters such as U+2028 that a label may hold,
    # which would throw the line numbers off.
    for number, raw in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        if not raw.strip():
            continue
        line = _Line(source, number, raw.rstrip("\r").split("|"))
        kind = line.text(0).strip()
        if kind == "CREDENTIALS":
            bank.login, bank.password = line.text(1), line.text(2)
        elif kind == "CREDENTIALS_OWNER":
            bank.owner = line.text(1) or None
        elif kind == "ACCOUNT":
            account = TestBankAccount(
                uid=line.text(1),
                number=line.text(2),
                balance_date=line.date(3, "balance date"),
                balance_cents=line.cents(4, "balance"),
                account_type=line.text(5).strip(),
                acceptable_uid_regexp=line.text(6),
                match_existing=line.flag(7, "match_existing"),
                owner=line.text(8),
                name=line.text(9),
                payment_source=line.text(10),
                payment_destination=line.text(11),
                iban=line.text(12).strip(),
                currency=line.text(13).strip(),
                bic=line.text(14).strip(),
            )
            bank.accounts.append(account)
        elif kind == "TRANSACTION":
            if account is None:
                raise line.error("TRANSACTION before any ACCOUNT")
            account.transactions.append(TestBankTransaction(
                amount_cents=line.cents(1, "amount"),
                date=line.date(2, "date"),
                label=line.text(3),
            ))
        # Other record types (behaviour switches, recurring transactions...) have an
        # unpublished syntax: ignored, as the reference says.
    return bank


# loading ------------------------------------------------------------------------------

def _bundled_root() -> Traversable:
    return resources.files(__name__.rpartition(".")[0]) / "testbank"


def bundled_testbanks() -> list[str]:
    """Names of the bundled Linxo files, such as ``fr/harry_potter``."""
    names: list[str] = []
    for lang in _bundled_root().iterdir():
        if lang.is_dir():
            names.extend(f"{lang.name}/{f.name[:-4]}" for f in lang.iterdir()
                         if f.name.endswith(".txt"))
    return sorted(names)


def load_testbank(path_or_name: str | os.PathLike[str]) -> TestBank:
    """Load a bundled file by name (``fr/harry_potter``, ``.txt`` optional) or a file path.

    A string is looked up among the bundled names first, then used as a path; a
    `PathLike` is always a path.
    """
    if isinstance(path_or_name, str):
        name = path_or_name.removesuffix(".txt")
        if name in bundled_testbanks():
            bundled = _bundled_root().joinpath(*f"{name}.txt".split("/"))
            return parse_testbank(bundled.read_text(encoding="utf-8"),
                                  source=f"testbank/{name}.txt")
    path = os.fspath(path_or_name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no test-bank file {path!r}, and it is not a bundled name "
                                f"(bundled: {', '.join(bundled_testbanks())})")
    with open(path, encoding="utf-8") as f:
        return parse_testbank(f.read(), source=path)


# applying -----------------------------------------------------------------------------

def apply_testbank(state: EmulatorState, user_id: int, bank: TestBank, *,
                   channel: str = "EMBEDDED", auto_sync: bool = True,
                   consent_per_account: bool = False,
                   provider_id: str = PROVIDER_ID) -> Connection:
    """Create the connection a successful test-bank run gives, with accounts and transactions.

    Follows §13.3: one sync time for everything, ids in file order, and with the
    REDIRECT channel only the checking and credit-card accounts.
    """
    if channel not in CHANNEL_MODES:
        raise ValueError(f"channel must be one of {CHANNEL_MODES}, not {channel!r}")
    now = state.now()
    data = state.data(user_id)
    channels = [
        Channel(provider_id, "EMBEDDED", account_types=ACCOUNT_TYPES),
        Channel(provider_id, "REDIRECT", account_types=REDIRECT_ACCOUNT_TYPES,
                expires=now + CONSENT_SECONDS),
    ]
    chosen = channels[CHANNEL_MODES.index(channel)]
    chosen.status = "SUCCESS"
    chosen.last_success_date = chosen.last_end_date = now
    connection = Connection(
        id=state.new_id("connection"), user_id=user_id, provider_id=provider_id,
        name=CONNECTION_NAME, creation_date=now, channels=channels, auto_sync=auto_sync,
        consent_per_account=consent_per_account, owner_name=bank.owner or None)
    data.connections[connection.id] = connection

    for line in bank.accounts:
        account_type = ACCOUNT_TYPE_MAP.get(line.account_type)
        if account_type is None or account_type not in chosen.account_types:
            continue
        account = Account(
            id=state.new_id("account"), connection_id=connection.id, user_id=user_id,
            name=line.name or line.number, type=account_type,
            balance_cents=line.balance_cents, balance_date=paris_midnight(line.balance_date),
            creation_date=now, currency=line.currency or "EUR", iban=line.iban or None,
            account_number=line.number or None, owner_name=line.owner or bank.owner or None,
            last_channel_definition_id=chosen.channel_definition_id)
        data.add_account(account)
        transactions = data.transactions[account.id]
        for tx in line.transactions:
            day = paris_midnight(tx.date)
            transactions.append(Transaction(
                id=state.new_id("transaction"), account_id=account.id,
                amount_cents=tx.amount_cents, currency=account.currency, label=tx.label,
                type="DEBIT" if tx.amount_cents < 0 else "CREDIT", origin="TRANSACTION",
                status="BOOKED", category_id="UNCATEGORIZED", date=day, import_date=now,
                value_date=day, booking_date=day, last_update_date=now))
    return connection
