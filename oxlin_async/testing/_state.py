"""The emulator's state: clients, users and their data, tokens, widget sessions, counters.

It is also the ground truth that tests read. Each user's data lives in a `UserData`;
the seeded population builds a user's data only when something first touches it, so a
large population costs nothing until used (ids are reserved up front, so what is built
does not depend on the order of access).
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import attrs

from ._queries import QueryCache
from ._records import Account, Client, Connection, Transaction, User

if TYPE_CHECKING:
    from ._population import Population


@attrs.define(eq=False)
class UserData:
    """One user's connections, accounts and transactions, in insertion (id) order."""

    connections: dict[int, Connection] = attrs.Factory(dict)
    accounts: dict[int, Account] = attrs.Factory(dict)
    #: account id -> its transactions
    transactions: dict[int, list[Transaction]] = attrs.Factory(dict)

    def add_account(self, account: Account) -> None:
        self.accounts[account.id] = account
        self.transactions.setdefault(account.id, [])

    def all_transactions(self) -> Iterator[Transaction]:
        for txs in self.transactions.values():
            yield from txs


@attrs.define(eq=False)
class Token:
    value: str = attrs.field(repr=False)
    client_id: str
    user_id: int | None
    scopes: frozenset[str]
    expires_at: float


@attrs.define(eq=False)
class RefreshToken:
    value: str = attrs.field(repr=False)
    client_id: str
    user_id: int
    scopes: frozenset[str]


@attrs.define(eq=False)
class WidgetSession:
    session_id: str
    client_id: str
    user_id: int
    expires_at: float
    #: wrong bank logins in a row, kept here and not in the page: a client cannot reset it
    failed_logins: int = 0


@attrs.define(eq=False)
class Counters:
    """Ground truth about traffic: requests per route name and token grants per grant type."""

    requests: Counter[str] = attrs.Factory(Counter)
    grants: Counter[str] = attrs.Factory(Counter)
    faults: Counter[str] = attrs.Factory(Counter)

    def reset(self) -> None:
        self.requests.clear()
        self.grants.clear()
        self.faults.clear()


# Where fresh ids start; the seeded population reserves the ranges below these.
_ID_BASES = {"user": 1_000, "connection": 4_000_000, "account": 60_000_000,
             "transaction": 2_000_000_000}


class EmulatorState:
    """Everything the emulator knows. Not thread-safe; used from the event loop only."""

    def __init__(self, *, token_lifetime: int = 3600,
                 clock: Callable[[], float] = time.time) -> None:
        self.token_lifetime = token_lifetime
        self.clock = clock
        self.clients: dict[str, Client] = {}
        self.users: dict[int, User] = {}
        self._emails: dict[str, int] = {}
        self._data: dict[int, UserData] = {}
        self._population: Population | None = None
        self.tokens: dict[str, Token] = {}
        self.refresh_tokens: dict[str, RefreshToken] = {}
        self.widget_sessions: dict[str, WidgetSession] = {}
        #: where clients reach the emulator (set by the sandbox once it listens): links are
        #: built from it, never from a request's ``Host`` header, which a client chooses
        self.base_url: str | None = None
        self.counters = Counters()
        self.query_cache = QueryCache()
        self._next = dict(_ID_BASES)

    # ids and time -------------------------------------------------------------------
    def now(self) -> int:
        return int(self.clock())

    def new_id(self, kind: str) -> int:
        value = self._next[kind]
        self._next[kind] = value + 1
        return value

    def reserve_ids(self, kind: str, count: int) -> int:
        """Reserve `count` consecutive ids of a kind; return the first."""
        first = self._next[kind]
        self._next[kind] = first + count
        return first

    # clients ------------------------------------------------------------------------
    def add_client(self, client: Client) -> Client:
        self.clients[client.client_id] = client
        return client

    # users --------------------------------------------------------------------------
    def attach_population(self, population: Population) -> None:
        self._population = population
        for user in population.users:
            self._add_user(user)

    def _add_user(self, user: User) -> None:
        self.users[user.id] = user
        self._emails[user.email.casefold()] = user.id

    def user_by_email(self, email: str) -> User | None:
        user_id = self._emails.get(email.casefold())
        return None if user_id is None else self.users[user_id]

    def create_user(self, email: str, password: str) -> User:
        user = User(id=self.new_id("user"), email=email, password=password,
                    creation_date=self.now())
        self._add_user(user)
        self._data[user.id] = UserData()
        return user

    def delete_user(self, user_id: int) -> None:
        user = self.users.pop(user_id)
        self._emails.pop(user.email.casefold(), None)
        self._data.pop(user_id, None)
        if self._population is not None:
            self._population.forget(user_id)  # a deleted seeded user is never rebuilt
        for store in (self.tokens, self.refresh_tokens, self.widget_sessions):
            for key in [k for k, v in store.items() if v.user_id == user_id]:
                del store[key]

    def data(self, user_id: int) -> UserData:
        """The user's data, built on first use for a seeded user."""
        found = self._data.get(user_id)
        if found is None:
            if self._population is not None and self._population.owns(user_id):
                found = self._population.build(user_id)
            else:
                found = UserData()
            self._data[user_id] = found
        return found

    def materialize(self) -> None:
        """Build every seeded user's data now."""
        for user_id in list(self.users):
            self.data(user_id)

    # resources ----------------------------------------------------------------------
    def delete_connection(self, user_id: int, connection_id: int) -> None:
        data = self.data(user_id)
        del data.connections[connection_id]
        for account_id in [a.id for a in data.accounts.values()
                           if a.connection_id == connection_id]:
            del data.accounts[account_id]
            data.transactions.pop(account_id, None)

    # tokens -------------------------------------------------------------------------
    def issue_token(self, client_id: str, user_id: int | None, scopes: frozenset[str],
                    lifetime: float | None = None) -> Token:
        lifetime = self.token_lifetime if lifetime is None else lifetime
        token = Token(value="at_" + secrets.token_urlsafe(24), client_id=client_id,
                      user_id=user_id, scopes=scopes, expires_at=self.clock() + lifetime)
        self.tokens[token.value] = token
        return token

    def issue_refresh_token(self, client_id: str, user_id: int,
                            scopes: frozenset[str]) -> RefreshToken:
        token = RefreshToken(value="rt_" + secrets.token_urlsafe(24), client_id=client_id,
                             user_id=user_id, scopes=scopes)
        self.refresh_tokens[token.value] = token
        return token

    def valid_token(self, value: str) -> Token | None:
        token = self.tokens.get(value)
        if token is None:
            return None
        if token.expires_at <= self.clock():
            del self.tokens[value]
            return None
        return token

    def expire_tokens(self, user_id: int | None = None, *, clients: bool = True) -> int:
        """Make access tokens invalid at once (all, or one user's); return how many."""
        doomed = [k for k, t in self.tokens.items()
                  if (user_id is None and (clients or t.user_id is not None))
                  or (user_id is not None and t.user_id == user_id)]
        for key in doomed:
            del self.tokens[key]
        return len(doomed)
