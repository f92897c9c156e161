"""A deterministic synthetic population: users with connections, accounts and transactions.

Everything derives from the seed, the user's index and the Paris date of `now`, never from
the order in which users are built, so a user's data can be built lazily on first access.
Ids are reserved up front with fixed counts per user, so each id is known by formula.

Transactions are built in a tight loop: one 64-bit random word per transaction is cut
into fields, each looked up in a precomputed table, and all timestamps come from
per-day tables (shared int objects, which also saves memory).
"""

from __future__ import annotations

import bisect
import datetime
import hashlib
import itertools
import random
import struct
from collections.abc import Mapping, Sequence
from typing import NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from ._records import (
    ACCOUNT_STATUSES,
    NEEDS_USER_ACTION,
    PARIS,
    Account,
    Channel,
    Connection,
    Transaction,
    User,
)
from ._state import EmulatorState, UserData
from ._testbank import paris_midnight

__all__ = ["Population"]

K = TypeVar("K")

DAY = 86_400
HISTORY_DAYS = 730
CONNECTIONS_PER_USER = 2  # the most a user gets; ids are reserved for that many
TROUBLED = (3, 7)  # users whose index ends so have a PARTIAL_SUCCESS / FAILED connection

FIRST_NAMES = ("Marie", "Jean", "Camille", "Lucas", "Léa", "Hugo", "Chloé", "Louis",
               "Manon", "Gabriel", "Inès", "Arthur", "Zoé", "Jules", "Émilie", "Nathan")
LAST_NAMES = ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit",
              "Durand", "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel",
              "García", "N'Diaye", "Fontaine", "Rousseau", "Blanc", "Guérin")
CITIES = ("PARIS", "LYON", "MARSEILLE", "TOULOUSE", "NANTES", "LILLE", "BORDEAUX", "RENNES")
EMPLOYERS = ("ACME SAS", "FNAC DARTY", "SNCF VOYAGEURS", "CAPGEMINI", "DECATHLON SE")
COMPANIES = ("TOTALENERGIES", "AIR LIQUIDE", "ORANGE SA", "SANOFI")
NOTES = ("Remboursé par Paul", "à vérifier", "Cadeau d'anniversaire", "note de frais",
         "Vacances 🏖", "PARTAGÉ AVEC CAMILLE")

#: provider id, connection name (mixed case on purpose: name sorts are case-insensitive).
PROVIDERS = (
    ("1001", "BNP Paribas"), ("1002", "Crédit Agricole"), ("1003", "société générale"),
    ("1004", "LCL"), ("1005", "BoursoBank"), ("1006", "La Banque Postale"),
    ("1007", "caisse d'epargne"), ("1008", "CIC"), ("1009", "Crédit Mutuel"),
    ("1010", "ING"), ("1011", "hello bank!"), ("1012", "Fortuneo"), ("1013", "qonto"),
    ("1014", "Revolut"), ("1015", "N26"), ("1016", "axa banque"),
)
#: (bank code, branch code) pairs for French IBANs.
BANK_CODES = ((30004, 1234), (30003, 3680), (30002, 6400), (20041, 1010), (10278, 6061),
              (30006, 1), (17515, 90000), (40618, 80452))

ACCOUNT_NAMES = {
    "CHECKINGS": ("Compte courant", "COMPTE CHEQUES", "compte joint", "Compte de dépôt",
                  "Compte Courant", "ma banque au quotidien"),
    "SAVINGS": ("Livret A", "LIVRET DEVELOPPEMENT DURABLE", "livret jeune", "LEP",
                "Compte sur livret", "PEL", "assurance vie"),
    "LOAN": ("Prêt immobilier", "PRET PERSONNEL", "crédit auto", "Prêt travaux"),
    "CREDIT_CARD": ("Carte Visa Premier", "CARTE GOLD MASTERCARD", "carte différée",
                    "Visa Infinite"),
}
BALANCE_RANGES = {"CHECKINGS": (-800, 6000), "SAVINGS": (0, 60000), "LOAN": (-250000, -1000),
                  "CREDIT_CARD": (-3000, 0)}
PROFESSIONAL_NAMES = ("Compte Pro", "compte professionnel", "COMPTE SOCIETE")
TYPE_ROTATION = ("CHECKINGS", "SAVINGS", "CREDIT_CARD", "LOAN")
REDIRECT_TYPES = ("CHECKINGS", "CREDIT_CARD")
IBAN_TYPES = ("CHECKINGS", "SAVINGS")
#: Account statuses other than ACTIVE, given in turn to every eighth account.
RARE_ACCOUNT_STATUSES = tuple(s for s in ACCOUNT_STATUSES if s != "ACTIVE")


class Template(NamedTuple):
    """A kind of transaction. Every transaction type and category appears in one."""

    label: str  # a format string; fields are filled per user
    category: str
    type: str  # the specific type; DEBIT or CREDIT (by sign) is used more often
    low: int  # amount range in euros, negative for debits
    high: int
    whole: bool  # whole euros only
    weights: tuple[int, int, int, int]  # on CHECKINGS, SAVINGS, LOAN, CREDIT_CARD accounts


T = Template
TEMPLATES = (
    T("CARTE X{card} CARREFOUR MARKET {city}", "SUPERMARKET", "POINT_OF_SALE", -180, -4, False,
     (14, 0, 0, 14)),
    T("PAIEMENT CB MONOPRIX {city}", "SUPERMARKET", "POINT_OF_SALE", -90, -2, False,
     (10, 0, 0, 10)),
    T("CB LECLERC DRIVE {city}", "SUPERMARKET", "ELECTRONIC_PAYMENT", -250, -15, False,
     (5, 0, 0, 5)),
    T("CARTE X{card} ZARA {city}", "DRESSING", "POINT_OF_SALE", -150, -15, False, (3, 0, 0, 5)),
    T("CB DECATHLON", "DRESSING", "CREDIT_CARD_PAYMENT", -120, -8, False, (2, 0, 0, 4)),
    T("CARTE X{card} MAXI ZOO", "PETS", "POINT_OF_SALE", -80, -6, False, (2, 0, 0, 2)),
    T("CB BOULANGERIE PAUL {city}", "SNAKS_ANDWORK_MEALS", "POINT_OF_SALE", -15, -1, False,
     (8, 0, 0, 8)),
    T("CARTE X{card} SUSHI SHOP", "SNAKS_ANDWORK_MEALS", "ELECTRONIC_PAYMENT", -45, -9, False,
     (3, 0, 0, 4)),
    T("PRLV SEPA LOYER {agency}", "HOUSING", "REPEATING_PAYMENT", -1400, -450, True,
     (2, 0, 0, 0)),
    T("PRLV SEPA EDF CLIENTS PARTICULIERS", "HOUSING", "DIRECT_DEBIT", -160, -35, False,
     (2, 0, 0, 0)),
    T("PRLV SEPA BOUYGUES TELECOM", "TELECOM", "DIRECT_DEBIT", -60, -15, False, (2, 0, 0, 0)),
    T("PRLV SEPA FREE MOBILE", "TELECOM", "DIRECT_DEBIT", -20, -2, False, (2, 0, 0, 1)),
    T("PRLV SEPA NETFLIX.COM", "SERVICES", "DIRECT_DEBIT", -18, -8, False, (2, 0, 0, 2)),
    T("CARTE X{card} SPOTIFY", "SERVICES", "CREDIT_CARD_PAYMENT", -17, -10, False, (1, 0, 0, 3)),
    T("COTISATION CARTE VISA", "SERVICES", "BANK_FEE", -12, -1, False, (2, 0, 0, 2)),
    T("FRAIS TENUE DE COMPTE", "SERVICES", "BANK_FEE", -8, -1, False, (2, 2, 0, 0)),
    T("ECHEANCE PRET {ref}", "LOANS", "REPEATING_PAYMENT", -1200, -150, False, (2, 0, 0, 0)),
    T("PRLV SEPA COFIDIS CREDIT {ref}", "CONSUMER_LOAN", "DIRECT_DEBIT", -300, -40, False,
     (2, 0, 0, 0)),
    T("RETRAIT DAB {city}", "DAILY_LIFE", "ATM", -300, -20, True, (6, 0, 0, 3)),
    T("RETRAIT ESPECES GUICHET {city}", "DAILY_LIFE", "CASH", -500, -50, True, (1, 1, 0, 0)),
    T("CHEQUE N°{num}", "DAILY_LIFE", "CHECK", -400, -10, False, (2, 0, 0, 0)),
    T("VIR SEPA EMIS VERS {name}", "UNCATEGORIZED", "POTENTIAL_TRANSFER", -600, -10, False,
     (4, 0, 0, 0)),
    T("VIREMENT INTERNE VERS {savings}", "UNCATEGORIZED", "INTERNAL_TRANSFER", -500, -20, True,
     (2, 4, 0, 0)),
    T("OPERATION DIVERSE {ref}", "UNCATEGORIZED", "OTHER", -60, -1, False, (1, 1, 1, 1)),
    T("VIR SEPA RECU /DE {employer} /MOTIF SALAIRE", "SALARY", "DIRECT_DEPOSIT", 1400, 4800,
     False, (3, 0, 0, 0)),
    T("VIREMENT RECU DE {name}", "INCOME", "POTENTIAL_TRANSFER", 10, 900, False, (3, 0, 0, 0)),
    T("REMISE CHEQUE N°{num}", "INCOME", "DEPOSIT", 20, 600, False, (1, 0, 0, 0)),
    T("INTERETS CREDITEURS", "INCOME", "INTEREST", 1, 90, False, (0, 3, 0, 0)),
    T("DIVIDENDES {company}", "INCOME", "DIVIDEND", 5, 400, False, (1, 1, 0, 0)),
    T("REMBOURSEMENT CPAM {ref}", "INCOME", "CREDIT", 5, 120, False, (2, 0, 0, 0)),
    T("AVOIR CARTE X{card} AMAZON", "DAILY_LIFE", "CREDIT", 5, 150, False, (1, 0, 0, 2)),
    T("VIREMENT INTERNE DEPUIS COMPTE COURANT", "UNCATEGORIZED", "INTERNAL_TRANSFER", 20, 800,
     True, (1, 6, 0, 0)),
    T("REMBOURSEMENT ECHEANCE {ref}", "LOANS", "REPEATING_PAYMENT", 150, 1200, False,
     (0, 0, 8, 0)),
    T("INTERETS ECHEANCE {ref}", "LOANS", "INTEREST", -180, -5, False, (0, 0, 3, 0)),
    T("ASSURANCE EMPRUNTEUR", "LOANS", "BANK_FEE", -40, -8, False, (0, 0, 2, 0)),
    T("PRLV MENSUEL CARTE X{card}", "UNCATEGORIZED", "CREDIT_CARD_PAYMENT", 200, 2500, False,
     (0, 0, 0, 2)),
)
TEMPLATE_COLUMN = {"CHECKINGS": 0, "SAVINGS": 1, "LOAN": 2, "CREDIT_CARD": 3}

# Each transaction draws one 64-bit random word, cut into fields (low bits first):
# template and type 12 bits, day and lags 14, status 10, origin 8, amount 6, label
# variant 2, uncategorized 4, note 8. The lookup tables below have those sizes.
AMOUNTS_PER_TEMPLATE = 64
LABEL_VARIANTS = 4
IMPORT_LAGS = (0, 0, 1, 3)  # days between a transaction's date and its import
SYNC_TIME = 4 * 3600 + 1234  # the nightly sync, after Paris midnight: many import ties
VALUE_LAGS = (0, 0, 1, 2)

STATUS_WEIGHTS = {"BOOKED": 860, "PENDING": 80, "OTHER": 16, "EXPIRED": 16, "REJECTED": 16,
                  "CANCELLED": 18, "REFUNDED": 18}
ORIGIN_WEIGHTS = {"TRANSACTION": 200, "ORIGINAL": 24, "RECURRING": 16, "UPCOMING": 8,
                  "SCHEDULED": 8}
NOTE_SLOTS = 8  # out of 256: about 3% of transactions carry a note


def _table(weights: Mapping[K, int], size: int) -> list[K]:
    """A lookup table of `size` entries in which each key fills its weight's share."""
    keys = list(weights)
    cumulative = list(itertools.accumulate(weights.values()))
    total = cumulative[-1]
    return [keys[bisect.bisect_right(cumulative, (i + 0.5) * total / size)]
            for i in range(size)]


def _french_iban(bank: int, branch: int, number: int) -> str:
    # RIB key and IBAN check digits as the banks compute them, so validators accept them.
    key = 97 - (89 * bank + 15 * branch + 3 * number) % 97
    bban = f"{bank:05d}{branch:05d}{number:011d}{key:02d}"
    check = 98 - int(bban + "152700") % 97  # "FR00" moved to the end, letters as numbers
    return f"FR{check:02d}{bban}"


def _password(seed: int, index: int) -> str:
    digest = hashlib.blake2b(f"oxlin-population:{seed}:{index}".encode(), digest_size=12)
    return f"Pw-{digest.hexdigest()}"


class Population:
    """`users` seeded users whose data `build` creates on demand (see `EmulatorState.data`).

    The caller attaches it with ``state.attach_population(population)``. User ``i`` (from
    0) has id ``first_user_id + i``, e-mail and password ``credentials[i]``, connections
    ``first_connection_id + 2*i`` (and ``+ 1`` when it has two), accounts
    ``first_account_id + accounts_per_user*i + j`` and, for the account of global index
    ``a``, transactions ``first_transaction_id + transactions_per_account*a + k``.
    """

    def __init__(self, state: EmulatorState, *, users: int, seed: int,
                 accounts_per_user: int = 3, transactions_per_account: int = 100,
                 now: int | None = None) -> None:
        if min(users, accounts_per_user, transactions_per_account) < 0:
            raise ValueError("population sizes cannot be negative")
        self.seed = seed
        self.size = users
        self.accounts_per_user = accounts_per_user
        self.transactions_per_account = transactions_per_account
        self.now = state.now() if now is None else now
        self.first_user_id = state.reserve_ids("user", users)
        self.first_connection_id = state.reserve_ids("connection",
                                                     users * CONNECTIONS_PER_USER)
        self.first_account_id = state.reserve_ids("account", users * accounts_per_user)
        self.first_transaction_id = state.reserve_ids(
            "transaction", users * accounts_per_user * transactions_per_account)
        self._forgotten: set[int] = set()

        # History: the HISTORY_DAYS Paris days before today. Every timestamp comes from
        # these, so the data depend on the date of `now`, not on its time of day.
        today = datetime.datetime.fromtimestamp(self.now, ZoneInfo(PARIS)).date()
        self._days = [paris_midnight(today - datetime.timedelta(days=HISTORY_DAYS - d))
                      for d in range(HISTORY_DAYS)]
        # The bank syncs every night; the last sync is last night, before `now`.
        self._sync = [day + SYNC_TIME for day in self._days]
        self._dates_of_word = self._date_table(today)
        self._status_of_word = _table(STATUS_WEIGHTS, 1024)
        self._origin_of_word = _table(ORIGIN_WEIGHTS, 256)
        self._note_of_word = [NOTES[i % len(NOTES)] if i < NOTE_SLOTS else None
                              for i in range(256)]
        rng = random.Random(f"oxlin-population:{seed}")
        amounts = [_amount_pool(rng, t) for t in TEMPLATES]
        self._template_of_word = [self._template_table(amounts, column) for column in range(4)]

        self.users: list[User] = [self._user(i) for i in range(users)]
        self.credentials: list[tuple[str, str]] = [(u.email, u.password) for u in self.users]

    def _date_table(self, today: datetime.date) -> list[tuple[int, int, int]]:
        """(date, import_date, value_date) for each value of the 14-bit day-and-lags field."""
        days, sync, last = self._days, self._sync, HISTORY_DAYS - 1
        # Value dates may fall a little after the history (today, tomorrow).
        value_days = days + [paris_midnight(today + datetime.timedelta(days=k))
                             for k in range(max(VALUE_LAGS))]
        table = []
        for i in range(1 << 14):
            d = (i & 1023) * HISTORY_DAYS >> 10
            imported = sync[min(d + IMPORT_LAGS[(i >> 10) & 3], last)]  # never in the future
            table.append((days[d], imported, value_days[d + VALUE_LAGS[i >> 12]]))
        return table

    @staticmethod
    def _template_table(amounts: list[list[int]], column: int
                        ) -> list[tuple[int, list[int], str, str]]:
        """(first label index, amounts, category, type) for each 12-bit template field."""
        chosen = _table({i: t.weights[column] for i, t in enumerate(TEMPLATES)}, 1024)
        table = []
        for i in range(1 << 12):
            t = chosen[i & 1023]
            template = TEMPLATES[t]
            generic = "DEBIT" if template.low < 0 else "CREDIT"
            table.append((t * LABEL_VARIANTS, amounts[t], template.category,
                          template.type if i >> 10 == 0 else generic))
        return table

    # users --------------------------------------------------------------------------
    def _name(self, index: int) -> tuple[str, str]:
        return (FIRST_NAMES[(index * 7 + self.seed) % len(FIRST_NAMES)],
                LAST_NAMES[(index * 13 + self.seed * 3) % len(LAST_NAMES)])

    def _user(self, index: int) -> User:
        first, last = self._name(index)
        profile: dict[str, object] = {}
        if index % 3 == 0:  # a few users carry profile fields from other Oxlin channels
            profile = {"first_name": first, "last_name": last}
        return User(id=self.first_user_id + index,
                    email=f"user{index:04d}.s{self.seed}@example.com",
                    password=_password(self.seed, index),
                    creation_date=self._days[0] + (index % 97) * 3600,
                    profile=profile)

    def index_of(self, user_id: int) -> int:
        return user_id - self.first_user_id

    def owns(self, user_id: int) -> bool:
        return (0 <= user_id - self.first_user_id < self.size
                and user_id not in self._forgotten)

    def forget(self, user_id: int) -> None:
        """Never build this user again (it was deleted)."""
        self._forgotten.add(user_id)

    # data ---------------------------------------------------------------------------
    def build(self, user_id: int) -> UserData:
        """Build one user's connections, accounts and transactions."""
        if not self.owns(user_id):
            raise KeyError(user_id)
        index = self.index_of(user_id)
        rng = random.Random(f"oxlin-population:{self.seed}:{index}")
        data = UserData()
        first, last = self._name(index)
        owner = f"{first} {last}".upper()
        per_user = self.accounts_per_user
        split = per_user
        if per_user >= 2 and (rng.random() < 0.6 or index % 10 in TROUBLED):
            split = rng.randint(1, per_user - 1)
        groups = [range(0, split)] + ([range(split, per_user)] if split < per_user else [])
        providers = rng.sample(PROVIDERS, len(groups))
        # Connected well into the history: the first sync imports every older transaction
        # at once (one import_date shared by many), later ones arrive nightly.
        created = self._days[rng.randrange(60, 360)] + rng.randrange(9 * 3600, 20 * 3600)
        labels = self._labels(rng, first, last)
        previous_balance: int | None = None
        for c, (group, provider) in enumerate(zip(groups, providers, strict=True)):
            if c and rng.random() < 0.6:  # otherwise both share a creation date (a tie)
                created += rng.randrange(1, 180) * DAY
            types = [_account_type(index, j) for j in group]
            connection = self._connection(rng, index, c, len(groups), provider, owner,
                                          created, types)
            data.connections[connection.id] = connection
            for j, account_type in zip(group, types, strict=True):
                account = self._account(rng, index, j, connection, account_type, owner,
                                        previous_balance)
                previous_balance = account.balance_cents
                data.add_account(account)
                data.transactions[account.id] = self._transactions(
                    rng, account, labels, index * per_user + j)
        return data

    def _connection(self, rng: random.Random, index: int, c: int, count: int,
                    provider: tuple[str, str], owner: str, created: int,
                    types: Sequence[str]) -> Connection:
        last_sync = self._sync[-1]
        status = "SUCCESS"
        troubled = c == count - 1 and index % 10 in TROUBLED
        if troubled:
            status = ("PARTIAL_SUCCESS" if index % 10 == TROUBLED[0]
                      else sorted(NEEDS_USER_ACTION)[index // 10 % len(NEEDS_USER_ACTION)])
        # PSD2 (REDIRECT) only serves checking and credit-card accounts.
        redirect = (all(t in REDIRECT_TYPES for t in types) and rng.random() < 0.5)
        provider_id, name = provider
        channels = [
            Channel(provider_id, "EMBEDDED", account_types=TYPE_ROTATION),
            Channel(provider_id, "REDIRECT", account_types=REDIRECT_TYPES,
                    expires=last_sync + rng.randrange(-5, 85) * DAY),
        ]
        chosen = channels[1 if redirect else 0]
        chosen.status = status
        chosen.last_end_date = last_sync
        chosen.last_success_date = (last_sync - rng.randrange(1, 40) * DAY if troubled
                                    else last_sync)
        return Connection(
            id=self.first_connection_id + index * CONNECTIONS_PER_USER + c,
            user_id=self.first_user_id + index, provider_id=provider_id, name=name,
            creation_date=created, channels=channels, auto_sync=index % 9 != 4,
            consent_per_account=redirect and index % 4 == 1, owner_name=owner)

    def _account(self, rng: random.Random, index: int, j: int, connection: Connection,
                 account_type: str, owner: str, previous_balance: int | None) -> Account:
        g = index * self.accounts_per_user + j  # global account index
        # Rotations rather than chance, so that a small population shows every value.
        status = ("ACTIVE" if g % 8 != 7
                  else RARE_ACCOUNT_STATUSES[g // 8 % len(RARE_ACCOUNT_STATUSES)])
        professional = g % 5 == 3
        names = (PROFESSIONAL_NAMES if professional and account_type == "CHECKINGS"
                 else ACCOUNT_NAMES[account_type])
        bank, branch = rng.choice(BANK_CODES)
        number = rng.randrange(10**10, 10**11)
        iban = _french_iban(bank, branch, number) if account_type in IBAN_TYPES else None
        account_number = (f"XXXX XXXX XXXX {number % 10000:04d}"
                          if account_type == "CREDIT_CARD" else f"{number:011d}")
        low, high = BALANCE_RANGES[account_type]
        if status == "CLOSED":
            balance = 0
        elif (previous_balance is not None and low * 100 <= previous_balance < high * 100
              and rng.random() < 0.3):
            balance = previous_balance  # a tie for balance sorts
        else:
            balance = rng.randrange(low * 100, high * 100)
            if rng.random() < 0.2:
                balance -= balance % 100  # whole euros
        created = connection.creation_date
        if j and rng.random() < 0.15:  # opened after the connection
            created += rng.randrange(1, 150) * DAY
        chosen = next(ch for ch in connection.channels if ch.status != "EMPTY")
        return Account(
            id=self.first_account_id + g, connection_id=connection.id,
            user_id=connection.user_id, name=rng.choice(names), type=account_type,
            balance_cents=balance, balance_date=self._sync[-1], creation_date=created,
            currency="USD" if g % 17 == 16 else "EUR", status=status,
            usage="PROFESSIONAL" if professional else "PERSONAL", iban=iban,
            account_number=account_number,
            owner_name=f"M. OU MME {owner}" if rng.random() < 0.1 else owner,
            last_channel_definition_id=chosen.channel_definition_id)

    @staticmethod
    def _labels(rng: random.Random, first: str, last: str) -> list[str]:
        """LABEL_VARIANTS labels per template, with this user's card, payees, employer..."""
        card = f"{rng.randrange(10000):04d}"
        variants = [{
            "card": card, "city": rng.choice(CITIES),
            "agency": f"AGENCE {rng.choice(LAST_NAMES).upper()}",
            "ref": f"{rng.randrange(10**9):09d}", "num": rng.randrange(1000000, 9999999),
            "name": f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}".upper(),
            "employer": rng.choice(EMPLOYERS), "company": rng.choice(COMPANIES),
            "savings": f"LIVRET A {first} {last}".upper(),
        } for _ in range(LABEL_VARIANTS)]
        return [t.label.format(**fields) for t in TEMPLATES for fields in variants]

    def _transactions(self, rng: random.Random, account: Account, labels: list[str],
                      global_index: int) -> list[Transaction]:
        count = self.transactions_per_account
        first_id = self.first_transaction_id + global_index * count
        first_import = account.creation_date
        account_id, currency = account.id, account.currency
        template_of_word = self._template_of_word[TEMPLATE_COLUMN[account.type]]
        dates_of_word, status_of_word = self._dates_of_word, self._status_of_word
        origin_of_word, note_of_word = self._origin_of_word, self._note_of_word
        # Little-endian explicitly, so that the data are the same on every platform.
        words = struct.unpack(f"<{count}Q", rng.randbytes(8 * count))
        out: list[Transaction] = []
        append = out.append
        for tx_id, w in zip(range(first_id, first_id + count), words, strict=True):
            label, amounts, category, kind = template_of_word[w & 4095]
            date, imported, value_date = dates_of_word[(w >> 12) & 16383]
            if imported < first_import:
                imported = first_import
            status = status_of_word[(w >> 26) & 1023]
            append(Transaction(
                tx_id, account_id, amounts[(w >> 44) & 63], currency,
                labels[label + ((w >> 50) & 3)], kind, origin_of_word[(w >> 36) & 255], status,
                category if (w >> 52) & 15 else "UNCATEGORIZED", date, imported, value_date,
                None if status == "PENDING" else date, imported, note_of_word[w >> 56]))
        return out


def _account_type(index: int, j: int) -> str:
    """CHECKINGS first; the others rotate with the user, so every type shows up."""
    return TYPE_ROTATION[0 if j == 0 else (index + j - 1) % 3 + 1]


def _amount_pool(rng: random.Random, template: Template) -> list[int]:
    """Amounts in cents, shared by every user (shared int objects save memory)."""
    low, high = template.low, template.high
    if template.whole:
        step = 10 if template.type in ("ATM", "CASH") else 1  # cash comes in tens
        return [rng.randrange(low // step, high // step + 1) * step * 100
                for _ in range(AMOUNTS_PER_TEMPLATE)]
    return [rng.randrange(low * 100, high * 100 + 1) for _ in range(AMOUNTS_PER_TEMPLATE)]

