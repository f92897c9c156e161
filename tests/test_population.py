"""The seeded synthetic population: determinism, ids by formula, variety, speed."""

from __future__ import annotations

import datetime
import string
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from oxlin_async.testing._population import Population
from oxlin_async.testing._records import (
    ACCOUNT_STATUSES,
    ACCOUNT_TYPES,
    CATEGORY_IDS,
    TRANSACTION_ORIGINS,
    TRANSACTION_STATUSES,
    TRANSACTION_TYPES,
    Account,
    Connection,
    Transaction,
)
from oxlin_async.testing._state import EmulatorState, UserData

NOW = 1_795_000_000  # 2026-11-18T08:26:40Z
PARIS = ZoneInfo("Europe/Paris")


def make(seed: int = 7, users: int = 20, now: int = NOW,
         **sizes: int) -> tuple[EmulatorState, Population]:
    state = EmulatorState(clock=lambda: float(now))
    population = Population(state, users=users, seed=seed, **sizes)
    state.attach_population(population)
    return state, population


def snapshot(data: UserData) -> list[dict[str, Any]]:
    return ([c.to_json() for c in data.connections.values()]
            + [a.to_json() for a in data.accounts.values()]
            + [t.to_json() for t in data.all_transactions()])


def everything(state: EmulatorState, population: Population
               ) -> tuple[list[Connection], list[Account], list[Transaction]]:
    data = [state.data(u.id) for u in population.users]
    return ([c for d in data for c in d.connections.values()],
            [a for d in data for a in d.accounts.values()],
            [t for d in data for t in d.all_transactions()])


@pytest.fixture(scope="module")
def world() -> tuple[EmulatorState, Population]:
    state, population = make()
    state.materialize()
    return state, population


# determinism -----------------------------------------------------------------------------

def test_same_seed_same_data_whatever_the_build_order() -> None:
    state_a, pop_a = make(users=6)
    state_b, pop_b = make(users=6, now=NOW + 3600)  # same Paris day
    a = [snapshot(state_a.data(u.id)) for u in pop_a.users]
    b = [snapshot(state_b.data(u.id)) for u in reversed(pop_b.users)][::-1]
    assert a == b
    assert pop_a.credentials == pop_b.credentials


def test_a_user_does_not_depend_on_the_population_size() -> None:
    state_a, pop_a = make(users=3)
    state_b, pop_b = make(users=9)
    assert snapshot(state_a.data(pop_a.users[2].id)) == snapshot(state_b.data(pop_b.users[2].id))


def test_different_seed_different_data() -> None:
    state_a, pop_a = make(seed=1, users=2)
    state_b, pop_b = make(seed=2, users=2)
    assert snapshot(state_a.data(pop_a.users[0].id)) != snapshot(state_b.data(pop_b.users[0].id))
    assert not {e for e, _ in pop_a.credentials} & {e for e, _ in pop_b.credentials}


# ids, counts and credentials ---------------------------------------------------------------

def test_ids_follow_the_formula_and_counts_are_exact(world: tuple[EmulatorState,
                                                                  Population]) -> None:
    state, population = world
    apu, tpa = population.accounts_per_user, population.transactions_per_account
    assert (apu, tpa) == (3, 100)
    for i, user in enumerate(population.users):
        assert user.id == population.first_user_id + i
        data = state.data(user.id)
        first_connection = population.first_connection_id + 2 * i
        assert list(data.connections) in ([first_connection], [first_connection,
                                                               first_connection + 1])
        assert list(data.accounts) == [population.first_account_id + apu * i + j
                                       for j in range(apu)]
        for j, (account_id, txs) in enumerate(data.transactions.items()):
            first = population.first_transaction_id + tpa * (apu * i + j)
            assert [t.id for t in txs] == list(range(first, first + tpa))
            assert {t.account_id for t in txs} == {account_id}
        assert {a.connection_id for a in data.accounts.values()} == set(data.connections)
        assert {c.user_id for c in data.connections.values()} == {user.id}
    # Fresh ids never collide with the reserved ranges.
    assert state.new_id("user") == population.first_user_id + len(population.users)
    last_tx = population.first_transaction_id + 20 * apu * tpa
    assert state.new_id("transaction") == last_tx


def test_other_sizes() -> None:
    state, population = make(users=4, accounts_per_user=1, transactions_per_account=0)
    for user in population.users:
        data = state.data(user.id)
        assert [a.type for a in data.accounts.values()] == ["CHECKINGS"]
        assert len(data.connections) == 1
        assert list(data.all_transactions()) == []
    state, population = make(users=2, accounts_per_user=0)
    assert len(state.data(population.users[0].id).connections) == 1


def test_credentials() -> None:
    state, population = make(users=30)
    emails = [e for e, _ in population.credentials]
    assert emails[1] == "user0001.s7@example.com"
    assert len(set(emails)) == 30
    for (email, password), user in zip(population.credentials, population.users, strict=True):
        assert (user.email, user.password) == (email, password)
        assert 8 <= len(password) <= 72 and set(password) <= set(string.printable[:94])
        assert state.user_by_email(email.upper()) is user
    assert len({p for _, p in population.credentials}) == 30


def test_deleted_users_are_never_rebuilt() -> None:
    state, population = make(users=2)
    user_id = population.users[0].id
    assert population.owns(user_id)
    state.delete_user(user_id)
    assert not population.owns(user_id)
    with pytest.raises(KeyError):
        population.build(user_id)
    assert not population.owns(state.create_user("new@example.com", "pw").id)


# variety ----------------------------------------------------------------------------------

def test_every_value_appears(world: tuple[EmulatorState, Population]) -> None:
    connections, accounts, txs = everything(*world)
    assert {a.type for a in accounts} == set(ACCOUNT_TYPES)
    assert {a.status for a in accounts} == set(ACCOUNT_STATUSES)
    assert {a.usage for a in accounts} == {"PERSONAL", "PROFESSIONAL"}
    assert {c.status for c in connections} == {"SUCCESS", "PARTIAL_SUCCESS", "FAILED"}
    assert {ch.mode for c in connections for ch in c.channels if ch.status != "EMPTY"} == {
        "EMBEDDED", "REDIRECT"}
    assert {t.status for t in txs} == set(TRANSACTION_STATUSES)
    assert {t.type for t in txs} == set(TRANSACTION_TYPES)
    assert {t.origin for t in txs} == set(TRANSACTION_ORIGINS)
    assert {t.category_id for t in txs} == CATEGORY_IDS


def test_distributions_are_plausible(world: tuple[EmulatorState, Population]) -> None:
    connections, accounts, txs = everything(*world)
    assert Counter(c.status for c in connections)["SUCCESS"] > len(connections) * 0.7
    statuses = Counter(t.status for t in txs)
    assert statuses.most_common(2)[0][0] == "BOOKED" and statuses["PENDING"] > statuses["OTHER"]
    types = Counter(t.type for t in txs)
    assert types["DEBIT"] + types["CREDIT"] > len(txs) / 2
    assert all(t.amount_cents != 0 for t in txs)
    assert sum(t.amount_cents < 0 for t in txs) > len(txs) / 2
    assert 0 < sum(t.amount_cents % 100 == 0 for t in txs) < len(txs) / 2
    assert 0 < sum(t.notes is not None for t in txs) < len(txs) / 10
    assert all(t.booking_date is None for t in txs if t.status == "PENDING")
    assert all(t.currency == world[0].data(a.user_id).accounts[a.id].currency
               for a in accounts[:3] for t in world[0].data(a.user_id).transactions[a.id])


def test_checkings_come_first(world: tuple[EmulatorState, Population]) -> None:
    state, population = world
    for user in population.users:
        assert next(iter(state.data(user.id).accounts.values())).type == "CHECKINGS"


def test_dates(world: tuple[EmulatorState, Population]) -> None:
    _, accounts, txs = everything(*world)
    two_years_ago = NOW - 731 * 86400
    for tx in txs:
        for value in (tx.date, tx.value_date, tx.booking_date):
            if value is not None:
                local = datetime.datetime.fromtimestamp(value, PARIS)
                assert local.time() == datetime.time(), tx
        assert two_years_ago <= tx.date < NOW
        assert tx.date < tx.import_date <= NOW
        assert tx.last_update_date == tx.import_date
    for account in accounts:
        assert account.creation_date <= account.balance_date <= NOW


def test_ties_and_mixed_case_for_sort_tests(world: tuple[EmulatorState,
                                                         Population]) -> None:
    state, population = world
    connections, accounts, _ = everything(state, population)
    names = [a.name for a in accounts] + [c.name for c in connections]
    assert sorted(names) != sorted(names, key=str.casefold)
    assert any(n != n.upper() and n != n.lower() for n in names)
    assert any(n == n.lower() for n in names) and any(n == n.upper() for n in names)
    assert len({a.name for a in accounts}) > 10

    def has_tie(values: list[int]) -> bool:
        return len(set(values)) < len(values)

    datas = [state.data(u.id) for u in population.users]
    assert any(has_tie([a.balance_cents for a in d.accounts.values()]) for d in datas)
    assert any(has_tie([a.creation_date for a in d.accounts.values()]) for d in datas)
    assert any(has_tie([c.creation_date for c in d.connections.values()]) for d in datas)
    for data in datas:
        for txs in data.transactions.values():
            assert has_tie([t.import_date for t in txs])
            assert has_tie([t.amount_cents for t in txs])


def test_ibans_are_valid(world: tuple[EmulatorState, Population]) -> None:
    _, accounts, _ = everything(*world)
    ibans = [a.iban for a in accounts if a.iban]
    assert ibans and len(set(ibans)) == len(ibans)
    for iban in ibans:
        moved = iban[4:] + iban[:4]
        assert int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def test_everything_renders(world: tuple[EmulatorState, Population]) -> None:
    state, population = world
    for user in population.users:
        user.to_json()
        snapshot(state.data(user.id))


# speed --------------------------------------------------------------------------------------

def test_construction_builds_no_user_data() -> None:
    # What keeps a large population cheap: users exist at once, their data on first use.
    state, population = make(seed=1, users=1000, accounts_per_user=3,
                             transactions_per_account=1000)
    assert len(population.users) == 1000
    assert not state._data
    state.data(population.users[0].id)
    assert list(state._data) == [population.users[0].id]
