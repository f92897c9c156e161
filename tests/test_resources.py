"""The public surface end to end: users, connections, accounts, transactions, categories,
the widget, the models, and argument checking (README §6, §9, §12), against the emulator
over real sockets, plus a tiny server of our own for what the emulator never sends."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from html.parser import HTMLParser
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from yarl import URL

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox

PARIS = ZoneInfo("Europe/Paris")
UTC = dt.timezone.utc
REDIRECT_URI = "https://app.example/cb"


def paris_day(ts: int) -> dt.date:
    return dt.datetime.fromtimestamp(ts, PARIS).date()


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
    """README §8: fields in order, '-' descending, ties by id ascending; else by id."""
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


def truth(sandbox: OxlinSandbox, index: int) -> Any:
    return sandbox.state.data(int(sandbox.users[index].id))


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
    data = truth(sandbox, 2)
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
        await carol.connections.get(sorted(truth(sandbox, 0).connections)[0])


async def test_delete_connection_cascades(client: ox.OxlinClient,
                                          sandbox: OxlinSandbox) -> None:
    carol = user_scope(client, sandbox, 2)
    data = truth(sandbox, 2)
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
    for account_id in doomed_accounts:  # an unknown account filter gives [] (README §9)
        assert await carol.transactions.list(account_id=account_id).collect() == []
    with pytest.raises(ox.NotFoundError):
        await carol.connections.get(doomed)
    with pytest.raises(ox.NotFoundError):
        await carol.connections.delete(doomed)
    assert [int(c.id) for c in await carol.connections.list().collect()] == [kept]


async def test_wait_until_settled(client: ox.OxlinClient, sandbox: OxlinSandbox) -> None:
    bob = user_scope(client, sandbox, 0)
    data = truth(sandbox, 0)
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
    data = truth(sandbox, index)
    expected = stable_sort([a for a in data.accounts.values() if keep(a)],
                           kwargs.get("sort"), ACCOUNT_KEYS)
    assert expected, "the case selects nothing"
    got = await user.accounts.list(**kwargs).collect()
    assert [int(a.id) for a in got] == [a.id for a in expected]


async def test_accounts_by_connection_and_iban(client: ox.OxlinClient,
                                               sandbox: OxlinSandbox) -> None:
    carol = user_scope(client, sandbox, 2)
    data = truth(sandbox, 2)
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
        for record in truth(sandbox, index).accounts.values():
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
        await bob.accounts.get(next(iter(truth(sandbox, 1).accounts)))


async def test_archive_and_unarchive(client: ox.OxlinClient, sandbox: OxlinSandbox) -> None:
    bob = user_scope(client, sandbox, 0)
    data = truth(sandbox, 0)
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
    records = {r.id: r for r in truth(sandbox, 0).all_transactions()}
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
        await bob.transactions.get(next(truth(sandbox, 1).all_transactions()).id)
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


# =========================================================================== the widget
class Page(HTMLParser):
    """Links and forms of one of the widget's plain HTML pages, as a browser sees them."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.links: list[str] = []
        self.forms: list[tuple[str, dict[str, str], dict[str, list[str]]]] = []
        self._select: str | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs_: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs_}
        if tag == "a":
            self.links.append(a["href"])
        elif tag == "form":
            self.forms.append((a["action"], {}, {}))
        elif self.forms and tag == "input":
            _, fields, choices = self.forms[-1]
            if a.get("type") == "radio":
                choices.setdefault(a["name"], []).append(a["value"])
                if "checked" in a:
                    fields[a["name"]] = a["value"]
            else:
                fields[a["name"]] = a.get("value", "")
        elif self.forms and tag == "select":
            self._select = a["name"]
        elif self.forms and tag == "option" and self._select is not None:
            self.forms[-1][2].setdefault(self._select, []).append(a["value"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self._select = None


@attrs.frozen
class FileAccount:
    number: str
    balance_date: dt.date
    balance: Decimal
    kind: str
    owner: str
    name: str
    iban: str
    currency: str
    transactions: list[tuple[Decimal, dt.date, str]]


def read_testbank(name: str) -> tuple[str | None, list[FileAccount]]:
    """The bundled file, read here independently of the emulator's parser."""
    text = (resources.files("oxlin_async.testing") / "testbank" / f"{name}.txt").read_text(
        encoding="utf-8")
    owner, accounts = None, []

    def day(raw: str) -> dt.date:
        d, m, y = raw.split("/")
        return dt.date(2000 + int(y), int(m), int(d))

    for line in text.splitlines():
        fields = line.split("|")
        if fields[0] == "CREDENTIALS_OWNER":
            owner = fields[1]
        elif fields[0] == "ACCOUNT":
            fields += [""] * (15 - len(fields))
            accounts.append(FileAccount(
                number=fields[2], balance_date=day(fields[3]), balance=Decimal(fields[4]),
                kind=fields[5], owner=fields[8], name=fields[9], iban=fields[12],
                currency=fields[13], transactions=[]))
        elif fields[0] == "TRANSACTION":
            accounts[-1].transactions.append((Decimal(fields[1]), day(fields[2]), fields[3]))
    return owner, accounts


FILE_TYPES = {"Checkings": "CHECKINGS", "Savings": "SAVINGS", "Loans": "LOAN",
              "CreditCard": "CREDIT_CARD"}


async def drive_widget(url: str, **inputs: str) -> str:
    """Play the user in the emulator's widget; return the completion redirect."""
    async with aiohttp.ClientSession() as http:
        async with http.get(url, allow_redirects=False) as response:
            assert response.status == 200, await response.text()
            bank_list = Page(await response.text())
        (link,) = [u for u in bank_list.links if "bank=linxo_test_bank" in u]
        assert URL(link).query["session_id"] == URL(url).query["session_id"]
        async with http.get(link, allow_redirects=False) as response:
            assert response.status == 200, await response.text()
            (form,) = Page(await response.text()).forms
        action, fields, choices = form
        assert set(choices["channel"]) == {"REDIRECT", "EMBEDDED"}
        assert fields["redirect_uri"] == REDIRECT_URI and fields["locale"] == "fr_FR"
        body = {**fields, "login": "dev", "password": "dev", "action": "connect", **inputs}
        async with http.post(action, data=body, allow_redirects=False) as response:
            assert response.status == 302, await response.text()
            return response.headers["Location"]


@pytest.mark.parametrize(("channel", "bank"), [("EMBEDDED", "fr/harry_potter"),
                                               ("EMBEDDED", "fr/hermione_granger"),
                                               ("REDIRECT", "fr/hermione_granger")])
async def test_widget_flow_end_to_end(client: ox.OxlinClient, sandbox: OxlinSandbox,
                                      channel: str, bank: str) -> None:
    await client.users.create("new@example.com", "s3cret-pass")
    alice = client.as_user("new@example.com", "s3cret-pass")
    widget = await alice.widget.create_session()
    assert widget.session_id and widget.session_id not in repr(widget)
    url = widget.add_connection_url(redirect_uri=REDIRECT_URI, locale="fr_FR")
    query = URL(url).query
    assert query["session_id"] == widget.session_id
    assert query["redirect_uri"] == REDIRECT_URI and query["locale"] == "fr_FR"

    location = await drive_widget(url, channel=channel, config_name=bank)
    assert location.startswith(REDIRECT_URI + "?")
    result = ox.parse_callback_url(location)
    assert result.succeeded and result.result == "created"
    assert result.connection_id is not None and result.error is None

    connection = await alice.connections.wait_until_settled(result.connection_id,
                                                            initial_delay=0.01)
    assert connection.status is ox.ConnectionStatus.SUCCESS
    assert connection.name == "Linxo Test Bank"
    owner, file_accounts = read_testbank(bank)
    assert connection.owner is not None and connection.owner.name == owner
    modes = {ch.mode: ch for ch in connection.channels}
    assert modes[ox.ChannelMode(channel)].status is ox.ChannelStatus.SUCCESS
    other = "EMBEDDED" if channel == "REDIRECT" else "REDIRECT"
    assert modes[ox.ChannelMode(other)].status is ox.ChannelStatus.EMPTY

    if channel == "REDIRECT":  # PSD2 serves checking and card accounts only
        file_accounts = [a for a in file_accounts if a.kind in ("Checkings", "CreditCard")]
    accounts = await alice.accounts.list(connection_id=result.connection_id).collect()
    assert len(accounts) == len(file_accounts)
    assert [a.id for a in accounts] == sorted((a.id for a in accounts), key=int)
    for account, line in zip(accounts, file_accounts, strict=True):  # ids in file order
        assert account.name == (line.name or line.number)
        assert account.account_number == line.number
        assert account.type == FILE_TYPES[line.kind]
        assert account.balance == line.balance and isinstance(account.balance, Decimal)
        assert account.iban == (line.iban or None)
        assert account.currency == (line.currency or "EUR")
        assert account.balance_date == dt.datetime.combine(line.balance_date, dt.time(),
                                                           PARIS)
        assert account.owner is not None and account.owner.name == (line.owner or owner)
        assert account.status is ox.AccountStatus.ACTIVE

        txs = await alice.transactions.list(account_id=account.id).collect()
        # one import time for the whole sync; the default order (import_date asc, id desc)
        # gives the file's lines in reverse
        expected = list(reversed(line.transactions))
        assert [(t.amount, t.day, t.label) for t in txs] == expected
        for tx in txs:
            assert tx.type is (ox.TransactionType.DEBIT if tx.amount < 0
                               else ox.TransactionType.CREDIT)
            assert tx.status is ox.TransactionStatus.BOOKED
            assert tx.origin is ox.TransactionOrigin.TRANSACTION
            assert tx.date == dt.datetime.combine(tx.day, dt.time(), PARIS)
            assert tx.import_date == connection.creation_date
    everything = await alice.transactions.list().collect()
    assert len(everything) == sum(len(a.transactions) for a in file_accounts)


async def test_widget_cancel_and_wrong_password(client: ox.OxlinClient) -> None:
    await client.users.create("new@example.com", "s3cret-pass")
    alice = client.as_user("new@example.com", "s3cret-pass")
    widget = await alice.widget.create_session()
    url = widget.add_connection_url(redirect_uri=REDIRECT_URI, locale="fr_FR")

    cancelled = ox.parse_callback_url(await drive_widget(url, action="cancel"))
    assert not cancelled.succeeded and cancelled.error == "cancelled"
    assert cancelled.connection_id is None

    # the session is reused; the emulator gives up at the third wrong password
    failed = ox.parse_callback_url(await drive_widget(url, password="nope", attempt="2"))
    assert not failed.succeeded and failed.error == "auth_failed"
    assert await alice.connections.list().collect() == []


# =========================================================================== bad arguments
def _naive() -> dt.datetime:
    return dt.datetime(2025, 1, 1, 12, 0)  # naive on purpose


Call = Callable[[ox.UserClient], Any]
USER_BAD: list[tuple[str, Call, str]] = [
    ("page_size 0", lambda u: u.transactions.list(page_size=0), "page_size"),
    ("page_size 501", lambda u: u.transactions.list(page_size=501), "page_size"),
    ("accounts page_size", lambda u: u.accounts.list(page_size=501), "page_size"),
    ("connections page_size", lambda u: u.connections.list(page_size=0), "page_size"),
    ("max_items", lambda u: u.transactions.list(max_items=-1), "max_items"),
    ("start_page", lambda u: u.accounts.list(start_page=0), "start_page"),
    ("prefetch", lambda u: u.connections.list(prefetch=0), "prefetch"),
    ("sort field", lambda u: u.transactions.list(sort="name"), "sort"),
    ("sort field descending", lambda u: u.transactions.list(sort="-label"), "sort"),
    ("accounts sort field", lambda u: u.accounts.list(sort="amount"), "sort"),
    ("connections sort field", lambda u: u.connections.list(sort="balance"), "sort"),
    ("repeated sort field", lambda u: u.transactions.list(sort=["date", "-date"]), "sort"),
    ("repeated sort field in a str", lambda u: u.accounts.list(sort="name,-name"), "sort"),
    ("empty sort item", lambda u: u.transactions.list(sort="date,"), "sort"),
    ("empty sort", lambda u: u.transactions.list(sort=""), "sort"),
    ("empty sort list", lambda u: u.transactions.list(sort=[]), "sort"),
    ("sort not a str", lambda u: u.accounts.list(sort=5), "sort"),  # type: ignore[arg-type]
    ("sort item not a str", lambda u: u.accounts.list(sort=[None]), "sort"),  # type: ignore[list-item]
    ("naive start_date", lambda u: u.transactions.list(start_date=_naive()), "start_date"),
    ("naive end_date", lambda u: u.transactions.list(end_date=_naive()), "end_date"),
    ("naive start_import_date", lambda u: u.transactions.list(start_import_date=_naive()),
     "start_import_date"),
    ("date as text", lambda u: u.transactions.list(start_date="2025-01-01"),  # type: ignore[arg-type]
     "start_date"),
    ("unknown status", lambda u: u.transactions.list(statuses=["BOOKED", "SETTLED"]),
     "statuses"),
    ("lower-case status", lambda u: u.transactions.list(excluded_statuses="booked"),
     "excluded_statuses"),
    ("no status", lambda u: u.transactions.list(statuses=[]), "statuses"),
    ("account_type", lambda u: u.transactions.list(account_type="CRYPTO_WALLET"),
     "account_type"),
    ("origin", lambda u: u.transactions.list(origin="IMPORTED"), "origin"),
    ("accounts type", lambda u: u.accounts.list(type="CHECKING"), "type"),
    ("another enum's member", lambda u: u.accounts.list(type=ox.AccountStatus.ACTIVE),
     "type"),
    ("accounts status", lambda u: u.accounts.list(status="FROZEN"), "status"),
    ("accounts usage", lambda u: u.accounts.list(usage="personal"), "usage"),
    ("connections status", lambda u: u.connections.list(status="DONE"), "status"),
    ("min_amount", lambda u: u.transactions.list(min_amount="12,5"), "min_amount"),
    ("max_amount NaN", lambda u: u.transactions.list(max_amount=Decimal("NaN")),
     "max_amount"),
    ("amount bool", lambda u: u.transactions.list(amount=True), "amount"),
    ("q", lambda u: u.accounts.list(q=""), "q"),
    ("category_id", lambda u: u.transactions.list(category_id=""), "category_id"),
    ("account_id filter", lambda u: u.transactions.list(account_id="１２"), "account_id"),
    ("connection_id filter", lambda u: u.accounts.list(connection_id=1.5),  # type: ignore[arg-type]
     "connection_id"),
    ("provider_id", lambda u: u.connections.list(provider_id="bnp"), "provider_id"),
    ("accounts.get", lambda u: u.accounts.get("12a"), "account_id"),
    ("transactions.get", lambda u: u.transactions.get("-1"), "transaction_id"),
    ("connections.get", lambda u: u.connections.get("../users/me"), "connection_id"),
    ("connections.delete", lambda u: u.connections.delete(""), "connection_id"),
    ("wait_until_settled", lambda u: u.connections.wait_until_settled("x"),
     "connection_id"),
    ("archive", lambda u: u.accounts.archive("1 OR 1"), "account_id"),
    ("unarchive", lambda u: u.accounts.unarchive(None), "account_id"),  # type: ignore[arg-type]
    ("users.get", lambda u: u.users.get("me"), "user_id"),
    ("users.delete", lambda u: u.users.delete("1e3"), "user_id"),
]
ClientCall = Callable[[ox.OxlinClient], Any]
CLIENT_BAD: list[tuple[str, ClientCall, str]] = [
    ("no @", lambda c: c.users.create("jane.example.com", "pw"), "email"),
    ("no dot in the domain", lambda c: c.users.create("jane@localhost", "pw"), "email"),
    ("two @", lambda c: c.users.create("jane@doe@example.com", "pw"), "email"),
    ("space", lambda c: c.users.create("jane doe@example.com", "pw"), "email"),
    ("no local part", lambda c: c.users.create("@example.com", "pw"), "email"),
    ("empty e-mail", lambda c: c.users.create("", "pw"), "email"),
    ("e-mail not a str", lambda c: c.users.create(None, "pw"), "email"),  # type: ignore[arg-type]
    ("empty password", lambda c: c.users.create("jane@example.com", ""), "password"),
    ("long password", lambda c: c.users.create("jane@example.com", "p" * 73), "password"),
    ("as_user e-mail", lambda c: c.as_user("jane", "pw"), "email"),
    ("as_user password", lambda c: c.as_user("jane@example.com", ""), "password"),
    ("as_user long password", lambda c: c.as_user("jane@example.com", "p" * 73), "password"),
]


async def _attempt(result: Any) -> None:
    if inspect.isawaitable(result):
        await result
    elif isinstance(result, ox.AsyncPaginator):
        await result.collect()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def dead_client() -> AsyncIterator[ox.OxlinClient]:
    """A client whose every request would fail to connect (no retries)."""
    base = f"http://127.0.0.1:{_closed_port()}"
    env = ox.Environment(auth_url=base, api_url=f"{base}/v2.1", embed_url=f"{base}/v2.1")
    async with ox.OxlinClient("id", "secret", environment=env,
                              retry=ox.RetryPolicy.disabled()) as c:
        yield c


@pytest.mark.parametrize(("call", "argument"), [(c, a) for _, c, a in USER_BAD],
                         ids=[n for n, _, _ in USER_BAD])
async def test_bad_argument_raises_before_any_request(
        dead_client: ox.OxlinClient, call: Call, argument: str) -> None:
    user = dead_client.as_user("jane@example.com", "pw")
    with pytest.raises(ox.ArgumentError) as raised:
        await _attempt(call(user))  # a request would raise TransportError instead
    assert raised.value.argument == argument
    assert repr(argument) in str(raised.value)


@pytest.mark.parametrize(("call", "argument"), [(c, a) for _, c, a in CLIENT_BAD],
                         ids=[n for n, _, _ in CLIENT_BAD])
async def test_bad_user_credentials_raise_before_any_request(
        dead_client: ox.OxlinClient, call: ClientCall, argument: str) -> None:
    with pytest.raises(ox.ArgumentError) as raised:
        await _attempt(call(dead_client))
    assert raised.value.argument == argument


async def test_bad_arguments_send_nothing(client: ox.OxlinClient,
                                          sandbox: OxlinSandbox) -> None:
    bob = user_scope(client, sandbox, 0)
    await bob.users.me()  # tokens in hand: what follows would need no grant
    await client.categories.list()
    before = traffic(sandbox)
    for name, call, argument in USER_BAD:
        with pytest.raises(ox.ArgumentError) as raised:
            await _attempt(call(bob))
        assert raised.value.argument == argument, name
    for name, client_call, argument in CLIENT_BAD:
        with pytest.raises(ox.ArgumentError) as raised:
            await _attempt(client_call(client))
        assert raised.value.argument == argument, name
    assert traffic(sandbox) == before


# ============================================== unknown enum values, extra fields, amounts
ACCOUNTS_BODY = [
    {"id": "1", "connection_id": "10", "name": "Wallet", "type": "CRYPTO_WALLET",
     "status": "FROZEN", "usage": "CORPORATE", "currency": "EUR", "balance": -79.99,
     "balance_date": 1700000000, "creation_date": 1600000000,
     "brand_new": {"nested": [1, 2]}, "risk_score": 0.7,
     "owner": {"name": "JANE DOE", "title": "Dr"}},
    {"id": "2", "connection_id": "10", "name": "Compte", "type": "CHECKINGS",
     "status": "ACTIVE", "currency": "EUR", "balance": 1234567.89,
     "balance_date": 1700000000, "creation_date": 1600000000, "iban": "FR76"},
    {"id": "3", "connection_id": "10", "name": "Livret", "type": "SAVINGS",
     "status": "ACTIVE", "currency": "EUR", "balance": 12,
     "balance_date": 1700000000, "creation_date": 1600000000},
]
TRANSACTIONS_BODY = [
    {"id": "100", "account_id": "1", "amount": -79.99, "currency": "EUR", "label": "A",
     "type": "INSTANT_PAYMENT", "origin": "IMPORTED", "status": "DISPUTED",
     "category_id": "CRYPTO", "date": 1735686000, "import_date": 1735700000,
     "fraud_flags": ["x"], "source": {"label": "bank", "kind": "api"}},
    {"id": "101", "account_id": "1", "amount": 0.1, "currency": "EUR", "label": "B",
     "type": "DEBIT", "origin": "TRANSACTION", "status": "BOOKED", "category_id": "PETS",
     "date": 1735686000, "import_date": 1735700000},
    {"id": "102", "account_id": "1", "amount": 1234567.89, "currency": "EUR", "label": "C",
     "type": "CREDIT", "origin": "TRANSACTION", "status": "BOOKED",
     "category_id": "SALARY", "date": 1735686000, "import_date": 1735700000},
    {"id": "103", "account_id": "1", "amount": 12, "currency": "EUR", "label": "D",
     "type": "CREDIT", "origin": "TRANSACTION", "status": "BOOKED",
     "category_id": "SALARY", "date": 1735686000, "import_date": 1735700000},
    {"id": "104", "account_id": "1", "amount": -0.05, "currency": "EUR", "label": "E",
     "type": "BANK_FEE", "origin": "TRANSACTION", "status": "PENDING",
     "category_id": "SERVICES", "date": 1735686000, "import_date": 1735700000},
]
CONNECTIONS_BODY = [
    {"id": "10", "user_id": "5", "provider_id": "77", "name": "Neo", "status": "MIGRATING",
     "creation_date": 1600000000, "auto_sync": True, "logo_url": "https://x/77.png",
     "consent_per_account": False, "tier": "gold",
     "channels": [{"channel_definition_id": "7700", "mode": "HYBRID",
                   "status": "SLEEPING", "account_types": ["CHECKINGS", "CRYPTO_WALLET"],
                   "channel_definition_unavailable": False, "region": "eu"}]},
]


@pytest.fixture
async def crafted() -> AsyncIterator[tuple[ox.OxlinClient, list[URL]]]:
    """A server of our own answering the token endpoint and three lists with crafted JSON."""
    seen: list[URL] = []

    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        grant = form["grant_type"]
        assert isinstance(grant, str)
        body: dict[str, Any] = {"access_token": f"at-{grant}", "token_type": "Bearer",
                "expires_in": 3600, "scope": "x", "unexpected": True}
        if grant == "password":
            body["refresh_token"] = "rt"
        return web.json_response(body)

    def listing(body: list[dict[str, Any]]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            assert request.headers["Authorization"] == "Bearer at-password"
            seen.append(request.url)
            page, limit = int(request.query["page"]), int(request.query["limit"])
            text = json.dumps(body[(page - 1) * limit:page * limit])
            return web.Response(text=text, content_type="application/json")
        return handler

    async def create_user(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer at-client_credentials"
        email = (await request.json())["email"]
        location = {"slash@example.com": "/v2.1/users/42/",
                    "absolute@example.com": "https://api.example/v2.1/users/43",
                    "ok200@example.com": "/v2.1/users/44",
                    "words@example.com": "/v2.1/users/new"}.get(email)
        status = 200 if email == "ok200@example.com" else 201
        return web.Response(status=status,
                            headers={"Location": location} if location else None)

    app = web.Application()
    app.add_routes([web.post("/auth/token", token),
                    web.post("/v2.1/users", create_user),
                    web.get("/v2.1/accounts", listing(ACCOUNTS_BODY)),
                    web.get("/v2.1/transactions", listing(TRANSACTIONS_BODY)),
                    web.get("/v2.1/connections", listing(CONNECTIONS_BODY))])
    server = TestServer(app)
    await server.start_server()
    try:
        env = ox.Environment(auth_url=str(server.make_url("/auth")),
                             api_url=str(server.make_url("/v2.1")),
                             embed_url=str(server.make_url("/embed/v2.1")))
        async with ox.OxlinClient("id", "secret", environment=env,
                                  retry=ox.RetryPolicy.disabled()) as c:
            yield c, seen
    finally:
        await server.close()


@pytest.mark.parametrize("decoder", ["default", "stdlib"])
async def test_unknown_enum_values_and_extra_fields(
        crafted: tuple[ox.OxlinClient, list[URL]], decoder: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    if decoder == "stdlib":  # the JSON path used without orjson
        monkeypatch.setattr("oxlin_async._convert.orjson", None)
    client, seen = crafted
    jane = client.as_user("jane@example.com", "pw")

    accounts = await jane.accounts.list(type="SAVINGS", page_size=2).collect()
    assert [a.id for a in accounts] == ["1", "2", "3"]  # the server ignores the filter
    # a full page, then a short one (and maybe page 3, asked ahead and wasted)
    assert [dict(u.query) for u in seen[:2]] == [
        {"type": "SAVINGS", "page": "1", "limit": "2"},
        {"type": "SAVINGS", "page": "2", "limit": "2"}]
    assert len(seen) <= 3
    wallet, checking, _ = accounts
    assert wallet.type == "CRYPTO_WALLET" and type(wallet.type) is str
    assert wallet.status == "FROZEN" and type(wallet.status) is str
    assert wallet.usage == "CORPORATE" and type(wallet.usage) is str
    assert checking.type is ox.AccountType.CHECKINGS
    assert checking.status is ox.AccountStatus.ACTIVE and checking.usage is None
    assert wallet.owner == ox.Owner(name="JANE DOE")
    assert not hasattr(wallet, "brand_new") and not hasattr(wallet, "risk_score")
    for account, text in zip(accounts, ["-79.99", "1234567.89", "12"], strict=True):
        assert type(account.balance) is Decimal
        assert account.balance == Decimal(text) and str(account.balance) == text

    txs = [t async for t in jane.transactions.list()]
    assert [t.id for t in txs] == ["100", "101", "102", "103", "104"]
    odd = txs[0]
    assert (odd.type, odd.origin, odd.status) == ("INSTANT_PAYMENT", "IMPORTED", "DISPUTED")
    assert all(type(v) is str for v in (odd.type, odd.origin, odd.status))
    assert odd.source == ox.TransactionSource(label="bank")
    assert not hasattr(odd, "fraud_flags")
    assert txs[1].type is ox.TransactionType.DEBIT
    assert txs[4].status is ox.TransactionStatus.PENDING
    for tx, text in zip(txs, ["-79.99", "0.1", "1234567.89", "12", "-0.05"], strict=True):
        assert type(tx.amount) is Decimal
        assert tx.amount == Decimal(text) and str(tx.amount) == text
    assert sum(t.amount for t in txs) == Decimal("1234499.95")
    assert odd.day == dt.date(2025, 1, 1)  # 1735686000 is 1 Jan 2025 00:00 in Paris

    (connection,) = await jane.connections.list().collect()
    assert connection.status == "MIGRATING" and type(connection.status) is str
    (channel,) = connection.channels
    assert channel.mode == "HYBRID" and channel.status == "SLEEPING"
    assert channel.account_types == (ox.AccountType.CHECKINGS, "CRYPTO_WALLET")
    assert type(channel.account_types[1]) is str


async def test_create_user_reads_the_id_from_location(
        crafted: tuple[ox.OxlinClient, list[URL]]) -> None:
    client, _ = crafted
    assert await client.users.create("slash@example.com", "pw") == "42"
    assert await client.users.create("absolute@example.com", "pw") == "43"
    for email in ("ok200@example.com", "words@example.com", "none@example.com"):
        with pytest.raises(ox.DecodeError):  # not a 201 with an id in Location
            await client.users.create(email, "pw")
