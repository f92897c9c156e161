"""The public surface end to end: users, connections, accounts, transactions and
categories (docs/oxlin-api §6, §9), against the emulator over real sockets."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

import pytest
from _helpers import PARIS, paris_day, user_data

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox

UTC = dt.timezone.utc


def moment(ts: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, UTC)


def cents(value: Decimal) -> int:
    """Exact cents of a Decimal amount; fails if it has more than 2 decimals."""
    scaled = value * 100
    assert scaled == scaled.to_integral_value(), value
    return int(scaled)


def aware(value: dt.datetime | None) -> bool:
    return value is not None and value.tzinfo is not None and value.utcoffset() is not None


def traffic(sandbox: OxlinSandbox) -> tuple[int, int]:
    counters = sandbox.state.counters
    return sum(counters.requests.values()), sum(counters.grants.values())


def stable_sort(records: Iterable[Any], sort: str | list[str] | None,
                keys: dict[str, Callable[[Any], Any]]) -> list[Any]:
    """docs/oxlin-api §8: fields in order, '-' descending, ties by id ascending; else by id."""
    out = sorted(records, key=lambda r: r.id)
    if sort is None:
        return out
    fields = sort.split(",") if isinstance(sort, str) else list(sort)
    for field in reversed(fields):
        name = field.lstrip("-")
        out.sort(key=keys[name], reverse=field.startswith("-"))
    return out


ACCOUNT_KEYS: dict[str, Callable[[Any], Any]] = {
    "name": lambda a: a.name.casefold(), "creation_date": lambda a: a.creation_date,
    "balance": lambda a: a.balance_cents,
}
CONNECTION_KEYS: dict[str, Callable[[Any], Any]] = {
    "name": lambda c: c.name.casefold(), "creation_date": lambda c: c.creation_date,
}


def user_scope(client: ox.OxlinClient, sandbox: OxlinSandbox, index: int) -> ox.UserClient:
    user = sandbox.users[index]
    return client.as_user(user.email, user.password)


# =========================================================================== users
async def test_create_user_and_conflict(client: ox.OxlinClient, sandbox: OxlinSandbox) -> None:
    user_id = await client.users.create("new@example.com", "s3cret-pass")
    assert user_id.isdigit()
    record = sandbox.state.users[int(user_id)]
    assert record.email == "new@example.com"
    assert sandbox.state.counters.requests["POST /api/v2.1/users"] == 1

    with pytest.raises(ox.ConflictError) as raised:
        await client.users.create("new@example.com", "other-pass")
    assert raised.value.status == 409 and raised.value.code == "CONFLICT"
    with pytest.raises(ox.ConflictError):  # e-mails compare case-insensitively
        await client.users.create("NEW@Example.com", "other-pass")
    # POST /users is never replayed: one request per call
    assert sandbox.state.counters.requests["POST /api/v2.1/users"] == 3


async def test_as_user_does_no_io_until_used(client: ox.OxlinClient,
                                             sandbox: OxlinSandbox) -> None:
    await client.users.create("new@example.com", "s3cret-pass")
    before = traffic(sandbox)
    alice = client.as_user("new@example.com", "s3cret-pass")
    again = client.as_user("new@example.com", "s3cret-pass")
    client.as_user(sandbox.users[0].email, "wrong password, never checked")
    assert traffic(sandbox) == before

    me = await alice.users.me()
    assert me.email == "new@example.com"
    assert sandbox.state.counters.grants["password"] == 1
    assert (await again.users.me()).id == me.id  # the same token: no second grant
    assert sandbox.state.counters.grants["password"] == 1


async def test_me_get_delete(client: ox.OxlinClient, sandbox: OxlinSandbox) -> None:
    user_id = await client.users.create("new@example.com", "s3cret-pass")
    alice = client.as_user("new@example.com", "s3cret-pass")
    me = await alice.users.me()
    assert me.id == user_id and me.email == "new@example.com"
    assert aware(me.creation_date)
    assert me.creation_date == moment(sandbox.state.users[int(user_id)].creation_date)
    assert await alice.users.get(user_id) == me

    with pytest.raises(ox.PermissionDeniedError):  # a user reads only itself
        await alice.users.get(sandbox.users[0].id)

    seeded = await user_scope(client, sandbox, 0).users.me()  # profile fields of user 0
    assert seeded.first_name is not None and seeded.last_name is not None

    await alice.users.delete()
    assert int(user_id) not in sandbox.state.users
    with pytest.raises(ox.InvalidGrantError):  # its tokens are dead, so is the password
        await alice.users.me()
    # the e-mail is free again
    assert (await client.users.create("new@example.com", "s3cret-pass")) != user_id


# =========================================================================== connections
async def test_connections_list_filter_sort_get(client: ox.OxlinClient,
                                                sandbox: OxlinSandbox) -> None:
    carol = user_scope(client, sandbox, 2)  # two connections
    data = user_data(sandbox, 2)
    first_id, second_id = sorted(data.connections)
    # Make the first one FAILED on the ground truth: its used channel needs the user.
    used = next(ch for ch in data.connections[first_id].channels if ch.status != "EMPTY")
    used.status = "AUTH_FAILED"

    listed = [c async for c in carol.connections.list()]
    assert [int(c.id) for c in listed] == [first_id, second_id]

    for sort in ("-creation_date", "name", ["-name"], "creation_date,-name"):
        got = await carol.connections.list(sort=sort).collect()
        expected = stable_sort(data.connections.values(), sort, CONNECTION_KEYS)
        assert [int(c.id) for c in got] == [c.id for c in expected], sort

    ok = [c async for c in carol.connections.list(status=ox.ConnectionStatus.SUCCESS,
                                                  sort="-creation_date")]
    assert [int(c.id) for c in ok] == [second_id]
    failed = await carol.connections.list(status="FAILED").collect()
    assert [int(c.id) for c in failed] == [first_id]
    assert failed[0].status is ox.ConnectionStatus.FAILED
    assert await carol.connections.list(status=ox.ConnectionStatus.RUNNING).collect() == []

    provider = data.connections[second_id].provider_id
    by_provider = await carol.connections.list(provider_id=provider).collect()
    assert [int(c.id) for c in by_provider] == [second_id]

    one = await carol.connections.get(str(second_id))
    record = data.connections[second_id]
    assert one.id == str(second_id) and one.user_id == sandbox.users[2].id
    assert one.name == record.name and one.provider_id == record.provider_id
    assert one.status is ox.ConnectionStatus.SUCCESS
    assert one.creation_date == moment(record.creation_date) and aware(one.creation_date)
    assert one.owner is not None and one.owner.name == record.owner_name
    assert [ch.channel_definition_id for ch in one.channels] == \
        [ch.channel_definition_id for ch in record.channels]
    for channel, raw in zip(one.channels, record.channels, strict=True):
        assert channel.mode == raw.mode and isinstance(channel.mode, ox.ChannelMode)
        assert channel.status == raw.status
        assert channel.expires == (None if raw.expires is None else moment(raw.expires))
    assert await carol.connections.get(second_id) == one  # an int id is fine

    with pytest.raises(ox.NotFoundError):  # another user's connection
        await carol.connections.get(sorted(user_data(sandbox, 0).connections)[0])


async def test_delete_connection_cascades(client: ox.OxlinClient,
                                          sandbox: OxlinSandbox) -> None:
    carol = user_scope(client, sandbox, 2)
    data = user_data(sandbox, 2)
    doomed, kept = sorted(data.connections)
    doomed_accounts = {a.id for a in data.accounts.values() if a.connection_id == doomed}
    assert doomed_accounts
    before = await carol.accounts.list().collect()
    assert doomed_accounts <= {int(a.id) for a in before}

    await carol.connections.delete(str(doomed))
    assert doomed not in data.connections
    after = await carol.accounts.list().collect()
    assert {int(a.id) for a in after} == {int(a.id) for a in before} - doomed_accounts
    assert all(a.connection_id == str(kept) for a in after)
    for account_id in doomed_accounts:  # an unknown account filter gives [] (docs/oxlin-api §9)
        assert await carol.transactions.list(account_id=account_id).collect() == []
    with pytest.raises(ox.NotFoundError):
        await carol.connections.get(doomed)
    with pytest.raises(ox.NotFoundError):
        await carol.connections.delete(doomed)
    assert [int(c.id) for c in await carol.connections.list().collect()] == [kept]


async def test_wait_until_settled(client: ox.OxlinClient, sandbox: OxlinSandbox) -> None:
    bob = user_scope(client, sandbox, 0)
    data = user_data(sandbox, 0)
    connection_id = str(next(iter(data.connections)))
    route = "GET /api/v2.1/connections/{connection_id}"

    settled = await bob.connections.wait_until_settled(connection_id, timeout=5)
    assert settled.status is ox.ConnectionStatus.SUCCESS
    assert sandbox.state.counters.requests[route] == 1  # no wait when already settled

    channel = data.connections[int(connection_id)].channels[0]
    previous, channel.status = channel.status, "RUNNING"
    assert (await bob.connections.get(connection_id)).status is ox.ConnectionStatus.RUNNING
    with pytest.raises(ox.SettleTimeoutError) as raised:
        await bob.connections.wait_until_settled(connection_id, timeout=0.05,
                                                 initial_delay=0.01)
    assert isinstance(raised.value, TimeoutError)
    assert connection_id in str(raised.value)

    # It settles while we poll: the wait returns the settled connection.
    loop = asyncio.get_running_loop()
    handle = loop.call_later(0.05, setattr, channel, "status", previous)
    try:
        done = await bob.connections.wait_until_settled(connection_id, timeout=5,
                                                        initial_delay=0.01, max_delay=0.02)
    finally:
        handle.cancel()
    assert done.status is ox.ConnectionStatus.SUCCESS


# =========================================================================== accounts
ACCOUNT_CASES: list[tuple[int, dict[str, Any], Callable[[Any], bool]]] = [
    (2, {}, lambda a: True),
    (2, {"type": ox.AccountType.LOAN}, lambda a: a.type == "LOAN"),
    (0, {"type": "SAVINGS"}, lambda a: a.type == "SAVINGS"),
    (2, {"status": ox.AccountStatus.MANUAL}, lambda a: a.status == "MANUAL"),
    (2, {"status": "ACTIVE"}, lambda a: a.status == "ACTIVE"),
    (2, {"usage": ox.AccountUsage.PROFESSIONAL}, lambda a: a.usage == "PROFESSIONAL"),
    (1, {"usage": "PERSONAL", "sort": "-balance"}, lambda a: a.usage == "PERSONAL"),
    (0, {"q": "livret"}, lambda a: "livret" in a.name.casefold()),
    (0, {"q": "xxxx"},  # the masked card number, matched case-insensitively
     lambda a: "xxxx" in (a.account_number or "").casefold()),
    (0, {"sort": "-balance"}, lambda a: True),  # two accounts share a balance: id breaks
    (0, {"sort": "balance,name"}, lambda a: True),
    (2, {"sort": "name"}, lambda a: True),
    (2, {"sort": ["creation_date", "-name"]}, lambda a: True),
    (1, {"type": "CHECKINGS", "sort": "name"}, lambda a: a.type == "CHECKINGS"),
]


@pytest.mark.parametrize(("index", "kwargs", "keep"), ACCOUNT_CASES)
async def test_accounts_list_filters_and_sort(
        client: ox.OxlinClient, sandbox: OxlinSandbox, index: int, kwargs: dict[str, Any],
        keep: Callable[[Any], bool]) -> None:
    user = user_scope(client, sandbox, index)
    data = user_data(sandbox, index)
    expected = stable_sort([a for a in data.accounts.values() if keep(a)],
                           kwargs.get("sort"), ACCOUNT_KEYS)
    assert expected, "the case selects nothing"
    got = await user.accounts.list(**kwargs).collect()
    assert [int(a.id) for a in got] == [a.id for a in expected]


async def test_accounts_by_connection_and_iban(client: ox.OxlinClient,
                                               sandbox: OxlinSandbox) -> None:
    carol = user_scope(client, sandbox, 2)
    data = user_data(sandbox, 2)
    for connection_id in data.connections:
        got = await carol.accounts.list(connection_id=connection_id).collect()
        assert [int(a.id) for a in got] == \
            sorted(a.id for a in data.accounts.values() if a.connection_id == connection_id)
    assert await carol.accounts.list(connection_id="999999999").collect() == []

    account = next(a for a in data.accounts.values() if a.iban)
    fragment = account.iban[4:14].lower()  # q matches the IBAN too, case-insensitively
    got = await carol.accounts.list(q=fragment).collect()
    assert [int(a.id) for a in got] == [account.id]


async def test_account_get_and_models(client: ox.OxlinClient, sandbox: OxlinSandbox) -> None:
    for index in range(3):
        user = user_scope(client, sandbox, index)
        for record in user_data(sandbox, index).accounts.values():
            got = await user.accounts.get(str(record.id))
            assert got.id == str(record.id) and got.connection_id == str(record.connection_id)
            assert got.name == record.name and got.currency == record.currency
            assert got.type == record.type and isinstance(got.type, ox.AccountType)
            assert got.status == record.status and isinstance(got.status, ox.AccountStatus)
            assert got.usage == record.usage and isinstance(got.usage, ox.AccountUsage)
            assert isinstance(got.balance, Decimal) and cents(got.balance) == record.balance_cents
            assert got.balance_date == moment(record.balance_date) and aware(got.balance_date)
            assert got.creation_date == moment(record.creation_date)
            assert got.iban == record.iban and got.account_number == record.account_number
            assert got.owner is not None and got.owner.name == record.owner_name
            assert got.last_channel_definition_id == record.last_channel_definition_id
    bob = user_scope(client, sandbox, 0)
    with pytest.raises(ox.NotFoundError):
        await bob.accounts.get(next(iter(user_data(sandbox, 1).accounts)))


async def test_archive_and_unarchive(client: ox.OxlinClient, sandbox: OxlinSandbox) -> None:
    bob = user_scope(client, sandbox, 0)
    data = user_data(sandbox, 0)
    accounts = await bob.accounts.list(type=ox.AccountType.CHECKINGS, sort="name").collect()
    account_id = accounts[0].id
    transactions = await bob.transactions.list(account_id=account_id).collect()
    connection_status = (await bob.connections.get(accounts[0].connection_id)).status

    archived = await bob.accounts.archive(account_id)
    assert archived.id == account_id and archived.status is ox.AccountStatus.CLOSED
    assert data.accounts[int(account_id)].status == "CLOSED"
    assert (await bob.accounts.archive(account_id)).status is ox.AccountStatus.CLOSED
    closed = await bob.accounts.list(status=ox.AccountStatus.CLOSED).collect()
    assert [a.id for a in closed] == [account_id]
    assert account_id in {a.id for a in await bob.accounts.list().collect()}  # still listed
    # its transactions stay, and the connection's status does not change
    assert await bob.transactions.list(account_id=account_id).collect() == transactions
    assert (await bob.connections.get(accounts[0].connection_id)).status == connection_status

    unarchived = await bob.accounts.unarchive(account_id)
    assert unarchived.status is ox.AccountStatus.ACTIVE
    assert data.accounts[int(account_id)].status == "ACTIVE"
    assert await bob.accounts.list(status="CLOSED").collect() == []
    assert sandbox.state.counters.requests["PATCH /api/v2.1/accounts/{account_id}"] == 3


# =========================================================================== transactions
async def test_transaction_models_match_the_ground_truth(
        client: ox.OxlinClient, sandbox: OxlinSandbox) -> None:
    bob = user_scope(client, sandbox, 0)
    records = {r.id: r for r in user_data(sandbox, 0).all_transactions()}
    got = await bob.transactions.list().collect()
    assert {int(t.id) for t in got} == set(records)
    for tx in got:
        r = records[int(tx.id)]
        assert isinstance(tx.amount, Decimal) and cents(tx.amount) == r.amount_cents
        assert tx.amount == Decimal(r.amount_cents).scaleb(-2)  # exact, sign included
        assert tx.account_id == str(r.account_id) and tx.currency == r.currency
        assert tx.label == r.label and tx.remittance_information == (r.label,)
        assert tx.type == r.type and isinstance(tx.type, ox.TransactionType)
        assert tx.origin == r.origin and isinstance(tx.origin, ox.TransactionOrigin)
        assert tx.status == r.status and isinstance(tx.status, ox.TransactionStatus)
        assert tx.category_id == r.category_id and tx.notes == r.notes
        assert aware(tx.date) and aware(tx.import_date)
        assert tx.date == moment(r.date) and tx.import_date == moment(r.import_date)
        assert tx.value_date == (None if r.value_date is None else moment(r.value_date))
        assert tx.booking_date == (None if r.booking_date is None else moment(r.booking_date))
        assert tx.last_update_date == moment(r.last_update_date)
        # `date` is Paris midnight: the Paris day, never the UTC one (the evening before)
        assert tx.day == paris_day(r.date)
        assert tx.day != tx.date.astimezone(UTC).date()
        assert tx.day == tx.date.astimezone(PARIS).date()
    assert any(t.amount == t.amount.to_integral_value() for t in got)
    assert any(t.notes for t in got) and any(t.booking_date is None for t in got)


async def test_transaction_get(client: ox.OxlinClient, sandbox: OxlinSandbox) -> None:
    bob = user_scope(client, sandbox, 0)
    listed = await bob.transactions.list(max_items=5).collect()
    for tx in listed:
        assert await bob.transactions.get(tx.id) == tx
    with pytest.raises(ox.NotFoundError):  # another user's transaction
        await bob.transactions.get(next(user_data(sandbox, 1).all_transactions()).id)
    with pytest.raises(ox.NotFoundError):
        await bob.transactions.get("1")


# =========================================================================== categories
async def test_categories_for_client_and_user(client: ox.OxlinClient,
                                              sandbox: OxlinSandbox) -> None:
    from oxlin_async.testing._records import CATEGORIES

    by_client = await client.categories.list()
    assert sandbox.state.counters.grants["client_credentials"] == 1
    assert sandbox.state.counters.grants["password"] == 0
    by_user = await user_scope(client, sandbox, 0).categories.list()
    assert by_user == by_client
    labels = {cid: label for cid, label, _, _ in CATEGORIES}
    assert [(c.id, c.label, c.type) for c in by_client] == \
        [(cid, label, kind) for cid, label, kind, _ in CATEGORIES]
    for category, (_, _, _, parent) in zip(by_client, CATEGORIES, strict=True):
        if parent is None:
            assert category.parent is None
        else:
            assert category.parent == ox.CategoryParent(id=parent, label=labels[parent])
    assert {"DAILY_LIFE", "SUPERMARKET", "SNAKS_ANDWORK_MEALS", "UNCATEGORIZED"} <= \
        {c.id for c in by_client}
