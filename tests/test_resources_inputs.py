"""What the SDK does with odd input: bad arguments fail before any request, and answers
the emulator never sends (unknown enum values, extra fields, odd amounts, a Location
header) decode as documented, from a tiny server of our own."""

from __future__ import annotations

import datetime as dt
import inspect
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
from _helpers import client_of, closed_port
from aiohttp import web
from yarl import URL

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox


def traffic(sandbox: OxlinSandbox) -> tuple[int, int]:
    counters = sandbox.state.counters
    return sum(counters.requests.values()), sum(counters.grants.values())


def user_scope(client: ox.OxlinClient, sandbox: OxlinSandbox, index: int) -> ox.UserClient:
    user = sandbox.users[index]
    return client.as_user(user.email, user.password)


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


@pytest.fixture
async def dead_client() -> AsyncIterator[ox.OxlinClient]:
    """A client whose every request would fail to connect (no retries)."""
    base = f"http://127.0.0.1:{closed_port()}"
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
                    "absolute@example.com": str(request.url.origin()) + "/v2.1/users/43",
                    # another host's user is not ours (issue 9, item 12)
                    "elsewhere@example.com": "https://api.example/v2.1/users/45",
                    "ok200@example.com": "/v2.1/users/44",
                    "words@example.com": "/v2.1/users/new"}.get(email)
        status = 200 if email == "ok200@example.com" else 201
        return web.Response(status=status,
                            headers={"Location": location} if location else None)

    routes = [web.post("/auth/token", token), web.post("/v2.1/users", create_user),
              web.get("/v2.1/accounts", listing(ACCOUNTS_BODY)),
              web.get("/v2.1/transactions", listing(TRANSACTIONS_BODY)),
              web.get("/v2.1/connections", listing(CONNECTIONS_BODY))]
    async with client_of(routes, retry=ox.RetryPolicy.disabled()) as c:
        yield c, seen


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
    for email in ("elsewhere@example.com", "words@example.com", "none@example.com"):
        with pytest.raises(ox.DecodeError):  # not a 201 with an id in Location
            await client.users.create(email, "pw")
    with pytest.raises(ox.UnexpectedStatusError) as undocumented:  # POST /users says 201
        await client.users.create("ok200@example.com", "pw")
    assert undocumented.value.status == 200
