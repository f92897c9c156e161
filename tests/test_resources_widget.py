"""The widget end to end through the SDK: a session, the add-connection pages played as a
browser would, the callback, the new connection against the bundled test-bank file
(docs/oxlin-api §12, §13)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from importlib import resources

import aiohttp
import attrs
import pytest
from _helpers import PARIS, parse_page
from yarl import URL

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox

REDIRECT_URI = "https://app.example/cb"


# =========================================================================== the widget


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


async def drive_widget(url: str, *, status: int = 302, **inputs: str) -> str:
    """Play the user in the emulator's widget; return the completion redirect (or, with
    ``status=200``, the page that asks again)."""
    async with aiohttp.ClientSession() as http:
        async with http.get(url, allow_redirects=False) as response:
            assert response.status == 200, await response.text()
            bank_list = parse_page(await response.text())
        (link,) = [u for u in bank_list.links if "bank=linxo_test_bank" in u]
        assert URL(link).query["session_id"] == URL(url).query["session_id"]
        async with http.get(link, allow_redirects=False) as response:
            assert response.status == 200, await response.text()
            (form,) = parse_page(await response.text()).forms
        action, fields, choices = form.action, form.fields, form.choices
        assert set(choices["channel"]) == {"REDIRECT", "EMBEDDED"}
        assert fields["redirect_uri"] == REDIRECT_URI and fields["locale"] == "fr_FR"
        body = {**fields, "login": "dev", "password": "dev", "action": "connect", **inputs}
        async with http.post(action, data=body, allow_redirects=False) as response:
            assert response.status == status, await response.text()
            return response.headers["Location"] if status == 302 else await response.text()


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

    # the session is reused; the emulator gives up at the third wrong password, counted
    # on the server: a posted `attempt` changes nothing (issue 9)
    for left in (2, 1):
        page = await drive_widget(url, status=200, password="nope", attempt="0")
        assert f"({left} attempt(s) left)" in page
    failed = ox.parse_callback_url(await drive_widget(url, password="nope", attempt="0"))
    assert not failed.succeeded and failed.error == "auth_failed"
    assert await alice.connections.list().collect() == []
