"""The emulator's API host over real HTTP (README §2, §5-§10, §14).

A plain `aiohttp.ClientSession` drives the server, and answers are compared with the
ground truth (`sandbox.state`). Expected lists are computed here, by code written for the
test (filters, sorts and pages), never with the emulator's own query code.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import aiohttp
import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oxlin_async.testing import OxlinSandbox, UserData, load_testbank
from oxlin_async.testing._records import Account, Connection, Transaction
from oxlin_async.testing._testbank import apply_testbank

ACCOUNT_TYPES = ("CHECKINGS", "SAVINGS", "LOAN", "CREDIT_CARD")
ACCOUNT_STATUSES = ("MANUAL", "ACTIVE", "ERROR", "NOT_FOUND", "CLOSED", "SUSPENDED",
                    "PENDING_CONSENT")
CONNECTION_STATUSES = ("RUNNING", "SUCCESS", "PARTIAL_SUCCESS", "FAILED", "CLOSED", "NONE")
ORIGINS = ("ORIGINAL", "UPCOMING", "TRANSACTION", "RECURRING", "SCHEDULED")
STATUSES = ("BOOKED", "PENDING", "OTHER", "EXPIRED", "REJECTED", "CANCELLED", "REFUNDED")
CATEGORY_IDS = ("DAILY_LIFE", "SUPERMARKET", "CONSUMER_LOAN", "DRESSING", "PETS", "TELECOM",
                "SNAKS_ANDWORK_MEALS", "SERVICES", "UNCATEGORIZED")
QUICKSTART_SCOPES = ("openid profile profile_edit accounts_read accounts_manage "
                     "connections_manage transactions_read")
CENT = Decimal("0.01")
DAY = 86_400


# ------------------------------------------------------------------------------ plumbing
@attrs.frozen
class Reply:
    status: int
    headers: Mapping[str, str]
    raw: bytes

    def json(self) -> Any:
        return json.loads(self.raw, parse_float=Decimal)


def assert_error(reply: Reply, status: int, error: str) -> None:
    assert reply.status == status, reply.raw
    body = reply.json()
    assert body["error"] == error, body


class Api:
    """Requests against one sandbox; every answer is checked for X-Request-ID and, when it
    is an error, for the exact ``{"error", "error_description"}`` shape."""

    def __init__(self, http: aiohttp.ClientSession, sandbox: OxlinSandbox) -> None:
        self.http = http
        self.sandbox = sandbox
        self.request_ids: set[str] = set()

    async def request(self, method: str, path: str, token: str | None = None, *,
                      base: str | None = None, params: Mapping[str, str] | None = None,
                      json_body: Any = None, data: Any = None,
                      headers: Mapping[str, str] | None = None) -> Reply:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        url = (self.sandbox.api_url if base is None else base) + path
        async with self.http.request(method, url, params=params, json=json_body, data=data,
                                     headers=sent) as resp:
            reply = Reply(resp.status, resp.headers, await resp.read())
        request_id = reply.headers.get("X-Request-ID")
        assert request_id, f"{method} {path} has no X-Request-ID"
        assert request_id not in self.request_ids, "X-Request-ID repeats"
        self.request_ids.add(request_id)
        if reply.status >= 400:
            assert reply.headers["Content-Type"].startswith("application/json")
            body = json.loads(reply.raw)
            assert set(body) == {"error", "error_description"}, body
            assert isinstance(body["error"], str)
            assert isinstance(body["error_description"], str)
            assert body["error_description"]
        return reply

    async def get(self, path: str, token: str, **params: str) -> Reply:
        return await self.request("GET", path, token, params=params)

    async def ok(self, path: str, token: str, **params: str) -> Any:
        reply = await self.get(path, token, **params)
        assert reply.status == 200, reply.raw
        return reply.json()

    async def all_pages(self, path: str, token: str, limit: int = 500,
                        **params: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for page in range(1, 50):
            items = await self.ok(path, token, **params, page=str(page), limit=str(limit))
            out += items
            if len(items) < limit:
                return out
        raise AssertionError("too many pages")

    # tokens -----------------------------------------------------------------------
    @property
    def credentials(self) -> dict[str, str]:
        return {"client_id": self.sandbox.client_id,
                "client_secret": self.sandbox.client_secret}

    async def token(self, data: Mapping[str, str], *, basic: bool = False) -> dict[str, Any]:
        headers = {}
        if basic:
            raw = f"{self.sandbox.client_id}:{self.sandbox.client_secret}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        else:
            data = {**data, **self.credentials}
        reply = await self.request("POST", "/token", base=self.sandbox.auth_url, data=data,
                                   headers=headers)
        assert reply.status == 200, reply.raw
        return reply.json()  # type: ignore[no-any-return]

    async def client_token(self, scope: str | None = None) -> str:
        data = {"grant_type": "client_credentials"}
        if scope is not None:
            data["scope"] = scope
        return (await self.token(data, basic=True))["access_token"]  # type: ignore[no-any-return]

    async def login(self, email: str, password: str, scope: str | None = None
                    ) -> dict[str, Any]:
        data = {"grant_type": "password", "username": email, "password": password}
        if scope is not None:
            data["scope"] = scope
        return await self.token(data)

    async def user_token(self, index: int = 0, scope: str | None = None) -> str:
        user = self.sandbox.users[index]
        return (await self.login(user.email, user.password, scope))["access_token"]  # type: ignore[no-any-return]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def api(sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> Api:
    return Api(http, sandbox)


def truth(sandbox: OxlinSandbox, index: int) -> UserData:
    return sandbox.state.data(int(sandbox.users[index].id))


def all_txs(data: UserData) -> list[Transaction]:
    return [t for txs in data.transactions.values() for t in txs]


def ids(items: Iterable[Mapping[str, Any]]) -> list[int]:
    return [int(item["id"]) for item in items]


def money(value: Decimal | int) -> int:
    """A JSON amount (parsed as Decimal) in cents, checking it has at most 2 decimals."""
    cents = Decimal(value) * 100
    assert cents == cents.to_integral_value(), value
    return int(cents)


# ---------------------------------------------------------------- the vendor quickstart
async def test_the_vendor_quickstart_flow(sandbox: OxlinSandbox, api: Api) -> None:
    # 1. Client token with Basic auth.
    client = await api.token({"grant_type": "client_credentials", "scope": "users_create"},
                             basic=True)
    assert client["scope"] == "users_create"
    # 2. Create the user; the id is in Location and the body is empty.
    email, password = "jane.doe@example.com", "s3cret-Passw0rd"
    created = await api.request("POST", "/users", client["access_token"],
                                json_body={"email": email, "password": password})
    assert created.status == 201, created.raw
    assert created.raw == b""
    location = created.headers["Location"]
    assert re.fullmatch(r"/v2\.1/users/[0-9]+", location), location
    user_id = location.rsplit("/", 1)[1]
    assert sandbox.state.users[int(user_id)].email == email
    # 3. User token (password grant), as in the docs.
    user = await api.token({"grant_type": "password", "username": email, "password": password,
                            "scope": QUICKSTART_SCOPES, "provider": "connect"})
    assert set(user["scope"].split()) == set(QUICKSTART_SCOPES.split())
    assert user["refresh_token"]
    token = user["access_token"]
    me = await api.ok("/users/me", token)
    assert me == await api.ok(f"/users/{user_id}", token)
    assert set(me) == {"id", "email", "creation_date"}
    assert me["id"] == user_id
    assert me["email"] == email
    assert isinstance(me["creation_date"], int)
    # 4. Widget session with the client credentials and the user token.
    session = await api.request("POST", "/widget/widget_session", base=sandbox.embed_url,
                                data={**api.credentials, "access_token": token})
    assert session.status == 200, session.raw
    body = session.json()
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", body["session_id"])
    assert f"session_id={body['session_id']}" in body["_links"]["add_connection"]
    assert sandbox.state.widget_sessions[body["session_id"]].user_id == int(user_id)
    # A new user has no data yet.
    for path in ("/connections", "/accounts", "/transactions"):
        assert await api.ok(path, token) == []


async def test_create_user_with_a_form_body(sandbox: OxlinSandbox, api: Api) -> None:
    client = await api.client_token("users_create")
    created = await api.request("POST", "/users", client,
                                data={"email": "form.user@example.com", "password": "pw"})
    assert created.status == 201, created.raw
    assert created.raw == b""
    user_id = int(created.headers["Location"].rsplit("/", 1)[1])
    assert sandbox.state.users[user_id].email == "form.user@example.com"
    login = await api.login("form.user@example.com", "pw", "profile")
    assert (await api.ok("/users/me", login["access_token"]))["id"] == str(user_id)


async def test_a_seeded_user_reads_its_data(sandbox: OxlinSandbox, api: Api) -> None:
    for index, user in enumerate(sandbox.users):
        data = truth(sandbox, index)
        token = await api.user_token(index, "profile accounts_read transactions_read")
        me = await api.ok("/users/me", token)
        assert me["id"] == user.id
        assert me["email"] == user.email
        connections = await api.ok("/connections", token)
        assert ids(connections) == sorted(data.connections)
        for item in connections:
            record = data.connections[int(item["id"])]
            assert item["user_id"] == user.id
            assert item["name"] == record.name
            assert item["status"] == record.status
            assert item["provider_id"] == record.provider_id
            # What the docs say to do after the widget: poll, then read per connection.
            one = await api.ok(f"/connections/{item['id']}", token)
            assert one == item
            assert one["status"] != "RUNNING"
            accounts = await api.ok("/accounts", token, connection_id=item["id"])
            assert ids(accounts) == sorted(a.id for a in data.accounts.values()
                                           if a.connection_id == record.id)
            for account in accounts:
                truth_account = data.accounts[int(account["id"])]
                assert money(account["balance"]) == truth_account.balance_cents
                assert await api.ok(f"/accounts/{account['id']}", token) == account
                txs = await api.all_pages("/transactions", token, account_id=account["id"])
                records = data.transactions[truth_account.id]
                assert ids(txs) == [t.id for t in sorted(records,
                                                         key=lambda t: (t.import_date, -t.id))]
                for tx in txs[:5]:
                    assert tx["account_id"] == account["id"]
                    assert await api.ok(f"/transactions/{tx['id']}", token) == tx
                by_id = {t.id: t for t in records}
                assert all(money(tx["amount"]) == by_id[int(tx["id"])].amount_cents
                           for tx in txs)
        assert ids(await api.all_pages("/transactions", token)) == [
            t.id for t in sorted(all_txs(data), key=lambda t: (t.import_date, -t.id))]


async def test_the_test_bank_user_sees_its_transactions_in_reverse_file_order(
        sandbox: OxlinSandbox, api: Api) -> None:
    index = len(sandbox.users) - 1
    assert "harry.potter" in sandbox.users[index].email
    token = await api.user_token(index)
    (connection,) = await api.ok("/connections", token)
    assert connection["name"] == "Linxo Test Bank"
    assert connection["status"] == "SUCCESS"
    txs = await api.all_pages("/transactions", token)
    bank = load_testbank("fr/harry_potter")
    file_labels = [tx.label for account in bank.accounts for tx in account.transactions]
    assert [t["label"] for t in txs] == file_labels[::-1]


# ------------------------------------------------------------------------- POST /users
BAD_USER_BODIES: list[Any] = [
    {"email": "no-at-sign.example.com", "password": "pw"},
    {"email": "two@at@example.com", "password": "pw"},
    {"email": "@example.com", "password": "pw"},
    {"email": "jane@", "password": "pw"},
    {"email": "jane@localhost", "password": "pw"},
    {"email": "jane doe@example.com", "password": "pw"},
    {"email": "jane@exa mple.com", "password": "pw"},
    {"email": "jane@example.com\n", "password": "pw"},
    {"email": "", "password": "pw"},
    {"email": 42, "password": "pw"},
    {"password": "pw"},
    {"email": "jane@example.com"},
    {},
    {"email": "jane@example.com", "password": ""},
    {"email": "jane@example.com", "password": None},
    {"email": "jane@example.com", "password": "x" * 73},
    {"email": "jane@example.com", "password": "pw", "name": "Jane"},
    {"email": "jane@example.com", "password": "pw", "id": "123"},
    {"email": "j@" + "e" * 250 + ".com", "password": "pw"},
    ["jane@example.com", "pw"],
]


async def test_create_user_rejects_bad_bodies(sandbox: OxlinSandbox, api: Api) -> None:
    client = await api.client_token("users_create")
    before = set(sandbox.state.users)
    for body in BAD_USER_BODIES:
        reply = await api.request("POST", "/users", client, json_body=body)
        assert reply.status == 400, body
        assert_error(reply, 400, "BAD_PARAMETER")
    assert set(sandbox.state.users) == before


async def test_create_user_rejects_bad_form_bodies(sandbox: OxlinSandbox, api: Api) -> None:
    client = await api.client_token("users_create")
    for data in ({"email": "jane@example.com"},
                 {"email": "jane@example.com", "password": "pw", "extra": "x"},
                 [("email", "jane@example.com"), ("email", "jane@example.com"),
                  ("password", "pw")]):
        assert_error(await api.request("POST", "/users", client, data=data), 400,
                     "BAD_PARAMETER")
    for raw in (b"{not json", b"[]", b'"jane@example.com"'):
        reply = await api.request("POST", "/users", client, data=raw,
                                  headers={"Content-Type": "application/json"})
        assert_error(reply, 400, "BAD_PARAMETER")


async def test_passwords_up_to_72_characters_are_accepted(sandbox: OxlinSandbox,
                                                          api: Api) -> None:
    client = await api.client_token("users_create")
    password = "p" * 72
    reply = await api.request("POST", "/users", client,
                              json_body={"email": "long.pw@example.com", "password": password})
    assert reply.status == 201, reply.raw
    await api.login("long.pw@example.com", password)


async def test_create_user_with_an_existing_email_is_a_conflict(sandbox: OxlinSandbox,
                                                                 api: Api) -> None:
    client = await api.client_token("users_create")
    first = await api.request("POST", "/users", client,
                              json_body={"email": "Jane.Doe@Example.com", "password": "pw"})
    assert first.status == 201
    count = len(sandbox.state.users)
    for email in ("Jane.Doe@Example.com", "jane.doe@example.com", "JANE.DOE@EXAMPLE.COM",
                  sandbox.users[0].email, sandbox.users[0].email.upper()):
        reply = await api.request("POST", "/users", client,
                                  json_body={"email": email, "password": "other"})
        assert_error(reply, 409, "CONFLICT")
    assert len(sandbox.state.users) == count
    # The original password still logs in; the conflicting one does not.
    await api.login("jane.doe@example.com", "pw")


async def test_create_user_needs_users_create(sandbox: OxlinSandbox, api: Api) -> None:
    body = {"email": "nobody@example.com", "password": "pw"}
    assert_error(await api.request("POST", "/users", json_body=body), 401, "invalid_token")
    for token in (await api.client_token("profile"), await api.user_token(0, "profile")):
        reply = await api.request("POST", "/users", token, json_body=body)
        assert_error(reply, 403, "insufficient_scope")
    # Any token with the scope will do, even a user's.
    reply = await api.request("POST", "/users", await api.user_token(0, "users_create"),
                              json_body=body)
    assert reply.status == 201


# ---------------------------------------------------------------------------- scopes
def _paths(sandbox: OxlinSandbox) -> dict[str, str]:
    data = truth(sandbox, 0)
    account = next(a for a in data.accounts.values() if a.status == "ACTIVE")
    return {"user": sandbox.users[0].id, "connection": str(next(iter(data.connections))),
            "account": str(account.id),
            "transaction": str(data.transactions[account.id][0].id)}


USER_ENDPOINTS = [
    ("GET", "/users/me"), ("GET", "/users/{user}"), ("DELETE", "/users/{user}"),
    ("GET", "/connections"), ("GET", "/connections/{connection}"),
    ("DELETE", "/connections/{connection}"), ("GET", "/accounts"),
    ("GET", "/accounts/{account}"), ("PATCH", "/accounts/{account}"),
    ("GET", "/transactions"), ("GET", "/transactions/{transaction}"),
]


async def test_a_client_token_on_a_user_endpoint_is_insufficient_scope(
        sandbox: OxlinSandbox, api: Api) -> None:
    token = await api.client_token()  # every scope the client has
    for method, path in USER_ENDPOINTS:
        body = {"status": "ACTIVE"} if method == "PATCH" else None
        reply = await api.request(method, path.format(**_paths(sandbox)), token,
                                  json_body=body)
        assert reply.status == 403, (method, path)
        assert_error(reply, 403, "insufficient_scope")
    assert len(sandbox.state.users) == len(sandbox.users)
    assert len(truth(sandbox, 0).connections) >= 1


SCOPE_CASES = [
    ("GET", "/users/me", "profile", 200),
    ("GET", "/users/me", "profile_edit accounts_read", 403),
    ("GET", "/users/{user}", "profile", 200),
    ("DELETE", "/users/{user}", "profile accounts_manage", 403),
    ("GET", "/connections", "accounts_read", 200),
    ("GET", "/connections", "accounts_manage", 200),
    ("GET", "/connections", "transactions_read connections_manage", 403),
    ("GET", "/connections/{connection}", "accounts_manage", 200),
    ("GET", "/connections/{connection}", "profile", 403),
    ("DELETE", "/connections/{connection}", "accounts_manage accounts_read", 403),
    ("GET", "/accounts", "accounts_read", 200),
    ("GET", "/accounts", "accounts_manage", 200),
    ("GET", "/accounts", "transactions_read", 403),
    ("GET", "/accounts/{account}", "accounts_read", 200),
    ("GET", "/accounts/{account}", "openid connections_sync", 403),
    ("PATCH", "/accounts/{account}", "accounts_manage", 200),
    ("PATCH", "/accounts/{account}", "accounts_read", 403),
    ("GET", "/transactions", "transactions_read", 200),
    ("GET", "/transactions", "accounts_read", 200),
    ("GET", "/transactions", "accounts_manage profile connections_manage", 403),
    ("GET", "/transactions/{transaction}", "accounts_read", 200),
    ("GET", "/transactions/{transaction}", "accounts_manage", 403),
    ("GET", "/categories", "openid", 200),
]


async def test_scopes_per_endpoint(sandbox: OxlinSandbox, api: Api) -> None:
    tokens: dict[str, str] = {}
    for method, path, scope, status in SCOPE_CASES:
        if scope not in tokens:
            tokens[scope] = await api.user_token(0, scope)
        body = {"status": "ACTIVE"} if method == "PATCH" else None
        reply = await api.request(method, path.format(**_paths(sandbox)), tokens[scope],
                                  json_body=body)
        assert reply.status == status, (method, path, scope, reply.raw)
        if status == 403:
            assert_error(reply, 403, "insufficient_scope")
    assert len(sandbox.state.users) == len(sandbox.users)
    assert len(truth(sandbox, 0).connections) >= 1


async def test_a_user_reads_only_itself(sandbox: OxlinSandbox, api: Api) -> None:
    token = await api.user_token(0)
    own = int(sandbox.users[0].id)
    for other in (sandbox.users[1].id, sandbox.users[-1].id, str(own + 100_000), "999999999",
                  "0"):
        assert_error(await api.get(f"/users/{other}", token), 403, "insufficient_scope")
        reply = await api.request("DELETE", f"/users/{other}", token)
        assert_error(reply, 403, "insufficient_scope")
    assert len(sandbox.state.users) == len(sandbox.users)
    assert (await api.ok(f"/users/{own}", token))["id"] == str(own)


async def test_categories_with_any_token(sandbox: OxlinSandbox, api: Api) -> None:
    tokens = [await api.client_token("users_create"), await api.user_token(0, "openid"),
              await api.user_token(1)]
    answers = [await api.ok("/categories", token) for token in tokens]
    assert answers[0] == answers[1] == answers[2]
    categories = answers[0]
    assert isinstance(categories, list)
    by_id = {c["id"]: c for c in categories}
    assert set(CATEGORY_IDS) <= set(by_id)
    assert by_id["SUPERMARKET"]["parent"] == {"id": "DAILY_LIFE",
                                              "label": by_id["DAILY_LIFE"]["label"]}
    assert "parent" not in by_id["DAILY_LIFE"]
    for category in categories:
        assert re.fullmatch(r"[A-Z0-9_]+", category["id"])
        assert category["label"]
        assert category["type"]
    # Every transaction's category is listed.
    assert {t.category_id for t in all_txs(truth(sandbox, 0))} <= set(by_id)
    assert_error(await api.get("/categories", "at_nope"), 401, "invalid_token")


# ------------------------------------------------------------------------------- 404s
@pytest.mark.parametrize("kind", ["connections", "accounts", "transactions"])
async def test_unknown_foreign_and_malformed_ids_are_resource_unknown(
        sandbox: OxlinSandbox, api: Api, kind: str) -> None:
    other = truth(sandbox, 1)
    foreign = {"connections": next(iter(other.connections)),
               "accounts": next(iter(other.accounts)),
               "transactions": all_txs(other)[0].id}[kind]
    token = await api.user_token(0)
    for ident in ("987654321", str(foreign), f"00{foreign}", "abc", "12ab", "-5", "1e3", "0",
                  "\u0663", "1%20"):
        reply = await api.get(f"/{kind}/{ident}", token)
        assert reply.status == 404, ident
        assert_error(reply, 404, "RESOURCE_UNKNOWN")
        if kind == "connections":
            reply = await api.request("DELETE", f"/connections/{ident}", token)
            assert_error(reply, 404, "RESOURCE_UNKNOWN")
        if kind == "accounts":
            reply = await api.request("PATCH", f"/accounts/{ident}", token,
                                      json_body={"status": "CLOSED"})
            assert_error(reply, 404, "RESOURCE_UNKNOWN")
    # The owner still has, and sees, its resource.
    assert foreign in other.connections or kind != "connections"
    assert kind != "accounts" or other.accounts[foreign].status != "CLOSED"
    owner = await api.user_token(1)
    assert (await api.get(f"/{kind}/{foreign}", owner)).status == 200


# ---------------------------------------------------------------- PATCH /accounts/{id}
async def test_archive_and_unarchive_an_account(sandbox: OxlinSandbox, api: Api) -> None:
    data = truth(sandbox, 0)
    account = next(a for a in data.accounts.values() if a.status == "ACTIVE")
    connection = data.connections[account.connection_id]
    connection_status = connection.status
    tx_count = len(data.transactions[account.id])
    token = await api.user_token(0, "accounts_manage transactions_read")
    path = f"/accounts/{account.id}"
    for status in ("CLOSED", "CLOSED", "ACTIVE", "ACTIVE", "CLOSED"):
        reply = await api.request("PATCH", path, token, json_body={"status": status})
        assert reply.status == 200, reply.raw
        body = reply.json()
        assert body["id"] == str(account.id)
        assert body["status"] == status
        assert account.status == status
        assert await api.ok(path, token) == body
        # Transactions are kept and the connection's status does not change.
        assert len(await api.all_pages("/transactions", token,
                                       account_id=str(account.id))) == tx_count
        assert connection.status == connection_status
    closed = await api.ok("/accounts", token, status="CLOSED")
    assert str(account.id) in ids_as_str(closed)


def ids_as_str(items: Iterable[Mapping[str, Any]]) -> set[str]:
    return {item["id"] for item in items}


async def test_patch_account_rejects_bad_bodies(sandbox: OxlinSandbox, api: Api) -> None:
    data = truth(sandbox, 0)
    account = next(a for a in data.accounts.values() if a.status == "ACTIVE")
    token = await api.user_token(0, "accounts_manage")
    for body in ({"status": "closed"}, {"status": "SUSPENDED"}, {"status": ""},
                 {"status": None}, {"status": ["CLOSED"]}, {}, {"name": "x"},
                 {"status": "CLOSED", "name": "x"}, {"status": "ACTIVE", "usage": "PERSONAL"},
                 [{"status": "CLOSED"}], "CLOSED"):
        reply = await api.request("PATCH", f"/accounts/{account.id}", token, json_body=body)
        assert reply.status == 400, body
        assert_error(reply, 400, "BAD_PARAMETER")
        assert account.status == "ACTIVE"
    reply = await api.request("PATCH", f"/accounts/{account.id}", token, data=b"{oops",
                              headers={"Content-Type": "application/json"})
    assert_error(reply, 400, "BAD_PARAMETER")


async def test_unknown_paths_methods_and_oversized_bodies_answer_json(
        sandbox: OxlinSandbox, api: Api) -> None:
    token = await api.user_token(0)
    assert_error(await api.get("/nope", token), 404, "RESOURCE_UNKNOWN")
    assert_error(await api.get("/accounts/1/transactions", token), 404, "RESOURCE_UNKNOWN")
    reply = await api.request("PUT", "/accounts", token, json_body={})
    assert_error(reply, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in reply.headers["Allow"].split(",")
    reply = await api.request("POST", "/transactions/1", token)
    assert_error(reply, 405, "METHOD_NOT_ALLOWED")
    # A body over the server's size limit: aiohttp's 413, in the JSON shape.
    body = io.BytesIO(b"email=" + b"x" * (1024 * 1024 + 100) + b"&password=pw")
    reply = await api.request("POST", "/users", await api.client_token("users_create"),
                              data=body,
                              headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status == 413
    assert len(sandbox.state.users) == len(sandbox.users)


# ------------------------------------------------------------------------- deletions
async def test_delete_connection_cascades(sandbox: OxlinSandbox, api: Api) -> None:
    index = max(range(len(sandbox.users)), key=lambda i: len(truth(sandbox, i).connections))
    data = truth(sandbox, index)
    assert len(data.connections) == 2
    doomed, kept = list(data.connections)
    doomed_accounts = [a.id for a in data.accounts.values() if a.connection_id == doomed]
    kept_accounts = [a.id for a in data.accounts.values() if a.connection_id == kept]
    assert doomed_accounts
    assert kept_accounts
    doomed_txs = [t.id for a in doomed_accounts for t in data.transactions[a]]
    kept_txs = sorted(t.id for a in kept_accounts for t in data.transactions[a])
    token = await api.user_token(index)

    assert_error(await api.request("DELETE", f"/connections/{doomed}",
                                   await api.user_token(index, "accounts_manage")),
                 403, "insufficient_scope")
    reply = await api.request("DELETE", f"/connections/{doomed}", token)
    assert reply.status == 204, reply.raw
    assert reply.raw == b""
    # Ground truth: the connection, its accounts and their transactions are gone.
    assert list(data.connections) == [kept]
    assert sorted(data.accounts) == sorted(kept_accounts)
    assert sorted(data.transactions) == sorted(kept_accounts)
    assert sorted(t.id for t in all_txs(data)) == kept_txs
    # The API agrees.
    assert_error(await api.get(f"/connections/{doomed}", token), 404, "RESOURCE_UNKNOWN")
    assert ids(await api.ok("/connections", token)) == [kept]
    assert await api.ok("/accounts", token, connection_id=str(doomed)) == []
    assert sorted(ids(await api.ok("/accounts", token))) == sorted(kept_accounts)
    for account_id in doomed_accounts:
        assert_error(await api.get(f"/accounts/{account_id}", token), 404, "RESOURCE_UNKNOWN")
        assert await api.ok("/transactions", token, account_id=str(account_id)) == []
    assert_error(await api.get(f"/transactions/{doomed_txs[0]}", token), 404,
                 "RESOURCE_UNKNOWN")
    assert sorted(ids(await api.all_pages("/transactions", token))) == kept_txs
    assert_error(await api.request("DELETE", f"/connections/{doomed}", token), 404,
                 "RESOURCE_UNKNOWN")


async def test_delete_user_cascades_and_frees_the_email(sandbox: OxlinSandbox,
                                                        api: Api) -> None:
    user = sandbox.users[0]
    user_id = int(user.id)
    before = truth(sandbox, 0)
    assert before.connections
    login = await api.login(user.email, user.password)
    other_token = await api.user_token(1)
    # Another session of the same user, and a widget session.
    second = await api.login(user.email.upper(), user.password, "profile")
    widget = await api.request("POST", "/widget/widget_session", base=sandbox.embed_url,
                               data={**api.credentials, "access_token": login["access_token"]})
    assert widget.status == 200

    assert_error(await api.request("DELETE", f"/users/{user_id}", second["access_token"]), 403,
                 "insufficient_scope")
    reply = await api.request("DELETE", f"/users/{user_id}", login["access_token"])
    assert reply.status == 204, reply.raw
    assert reply.raw == b""
    # Ground truth.
    assert user_id not in sandbox.state.users
    assert not sandbox.state.data(user_id).connections
    assert not sandbox.state.data(user_id).accounts
    assert all(t.user_id != user_id for t in sandbox.state.tokens.values())
    assert all(t.user_id != user_id for t in sandbox.state.refresh_tokens.values())
    assert all(s.user_id != user_id for s in sandbox.state.widget_sessions.values())
    # Its tokens are dead.
    for token in (login["access_token"], second["access_token"]):
        assert_error(await api.get("/users/me", token), 401, "invalid_token")
        assert_error(await api.get("/connections", token), 401, "invalid_token")
    for refresh_token in (login["refresh_token"], second["refresh_token"]):
        reply = await api.request("POST", "/token", base=sandbox.auth_url, data={
            "grant_type": "refresh_token", "refresh_token": refresh_token,
            **api.credentials})
        assert_error(reply, 400, "invalid_grant")
    reply = await api.request("POST", "/token", base=sandbox.auth_url, data={
        "grant_type": "password", "username": user.email, "password": user.password,
        **api.credentials})
    assert_error(reply, 400, "invalid_grant")
    # Other users are untouched.
    assert (await api.ok("/users/me", other_token))["id"] == sandbox.users[1].id
    assert await api.ok("/connections", other_token)
    # The e-mail can be registered again, as a new and empty user.
    client = await api.client_token("users_create")
    created = await api.request("POST", "/users", client,
                                json_body={"email": user.email.upper(), "password": "new-pw"})
    assert created.status == 201, created.raw
    new_id = int(created.headers["Location"].rsplit("/", 1)[1])
    assert new_id != user_id
    fresh = await api.login(user.email, "new-pw")
    assert (await api.ok("/users/me", fresh["access_token"]))["id"] == str(new_id)
    assert await api.ok("/connections", fresh["access_token"]) == []
    assert await api.ok("/transactions", fresh["access_token"]) == []


# ====================================================== filters, sorts and pagination
@attrs.frozen
class World:
    """A user with 900 transactions (3 accounts x 300), its data, and its token."""

    sandbox: OxlinSandbox
    api: Api
    token: str
    data: UserData
    other: UserData

    @property
    def txs(self) -> list[Transaction]:
        return all_txs(self.data)


@pytest.fixture
async def world(http: aiohttp.ClientSession) -> AsyncIterator[World]:
    async with OxlinSandbox(users=2, seed=3, transactions_per_account=300) as box:
        api = Api(http, box)
        token = await api.user_token(0, "accounts_read transactions_read")
        yield World(box, api, token, truth(box, 0), truth(box, 1))


# --- expectations, computed from the ground truth records ------------------------------
def _cmp(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def expected_order(records: Iterable[Any], sort: str | None,
                   keys: Mapping[str, Callable[[Any], Any]],
                   default: Callable[[Any], Any]) -> list[Any]:
    """`sort=-a,b` by comparison, field by field, then id ascending (README §8)."""
    items = list(records)
    if sort is None:
        return sorted(items, key=default)
    fields = [(item.lstrip("-"), item.startswith("-")) for item in sort.split(",")]

    def compare(x: Any, y: Any) -> int:
        for name, descending in fields:
            order = _cmp(keys[name](x), keys[name](y))
            if order:
                return -order if descending else order
        return _cmp(x.id, y.id)

    return sorted(items, key=functools.cmp_to_key(compare))


TX_KEYS: dict[str, Callable[[Transaction], Any]] = {
    "date": lambda t: t.date, "import_date": lambda t: t.import_date,
    "amount": lambda t: t.amount_cents}
ACCOUNT_KEYS: dict[str, Callable[[Account], Any]] = {
    "name": lambda a: a.name.casefold(), "creation_date": lambda a: a.creation_date,
    "balance": lambda a: a.balance_cents}
CONNECTION_KEYS: dict[str, Callable[[Connection], Any]] = {
    "name": lambda c: c.name.casefold(), "creation_date": lambda c: c.creation_date}


def _euros(cents: int) -> Decimal:
    return Decimal(cents) / 100


def tx_matches(t: Transaction, params: Mapping[str, str], data: UserData) -> bool:
    checks: list[bool] = []
    p = params
    if "account_id" in p:
        checks.append(str(t.account_id) == p["account_id"])
    if "account_type" in p:
        checks.append(data.accounts[t.account_id].type == p["account_type"])
    if "origin" in p:
        checks.append(t.origin == p["origin"])
    if "included_statuses" in p:
        checks.append(t.status in p["included_statuses"].split(","))
    if "excluded_statuses" in p:
        checks.append(t.status not in p["excluded_statuses"].split(","))
    if "min_amount" in p:
        checks.append(_euros(t.amount_cents) >= Decimal(p["min_amount"]))
    if "max_amount" in p:
        checks.append(_euros(t.amount_cents) <= Decimal(p["max_amount"]))
    if "amount" in p:
        wanted = Decimal(p["amount"])
        # A value too large to round to cents (1e30) matches nothing.
        checks.append(wanted.adjusted() < 20 and _euros(t.amount_cents) == wanted.quantize(CENT))
    if "start_date" in p:
        checks.append(t.date >= int(p["start_date"]))
    if "end_date" in p:
        checks.append(t.date <= int(p["end_date"]))
    if "start_import_date" in p:
        checks.append(t.import_date >= int(p["start_import_date"]))
    if "category_id" in p:
        checks.append(t.category_id == p["category_id"])
    return all(checks)


def expected_txs(data: UserData, params: Mapping[str, str]) -> list[int]:
    chosen = [t for t in all_txs(data) if tx_matches(t, params, data)]
    ordered = expected_order(chosen, params.get("sort"), TX_KEYS,
                             default=lambda t: (t.import_date, -t.id))
    return [t.id for t in ordered]


def account_matches(a: Account, params: Mapping[str, str]) -> bool:
    p = params
    if "connection_id" in p and str(a.connection_id) != p["connection_id"]:
        return False
    for name in ("type", "status", "usage"):
        if name in p and getattr(a, name) != p[name]:
            return False
    if "q" in p:
        needle = p["q"].casefold()
        return any(needle in value.casefold()
                   for value in (a.name, a.account_number, a.iban) if value is not None)
    return True


def expected_accounts(data: UserData, params: Mapping[str, str]) -> list[int]:
    chosen = [a for a in data.accounts.values() if account_matches(a, params)]
    return [a.id for a in expected_order(chosen, params.get("sort"), ACCOUNT_KEYS,
                                         default=lambda a: a.id)]


def expected_connections(data: UserData, params: Mapping[str, str]) -> list[int]:
    chosen = [c for c in data.connections.values()
              if ("status" not in params or c.status == params["status"])
              and ("provider_id" not in params or c.provider_id == params["provider_id"])]
    return [c.id for c in expected_order(chosen, params.get("sort"), CONNECTION_KEYS,
                                         default=lambda c: c.id)]


def paged(items: Sequence[int], params: Mapping[str, str]) -> list[int]:
    page, limit = int(params.get("page", "1")), int(params.get("limit", "100"))
    return list(items[(page - 1) * limit:page * limit])


# --- transaction filters ------------------------------------------------------------------
def _amount_text(cents: int) -> str:
    """How the server writes an amount (whole values without decimals)."""
    return str(cents // 100) if cents % 100 == 0 else str(Decimal(cents) / 100)


def _exponent_text(cents: int) -> str:
    return f"{cents}e-2"


def _some(txs: Sequence[Transaction], pick: Callable[[Transaction], bool]) -> Transaction:
    return sorted((t for t in txs if pick(t)), key=lambda t: t.id)[len(txs) // 50]


def _median_date(txs: Sequence[Transaction]) -> int:
    return sorted(t.date for t in txs)[len(txs) // 2]


def _next_date(txs: Sequence[Transaction]) -> int:
    """The first date after the median date that has transactions."""
    median = _median_date(txs)
    return min(t.date for t in txs if t.date > median)


TX_CASES: dict[str, Callable[[World], dict[str, str]]] = {
    "account_id": lambda w: {"account_id": str(list(w.data.accounts)[1])},
    "account_type-CHECKINGS": lambda w: {"account_type": "CHECKINGS"},
    "account_type-SAVINGS": lambda w: {"account_type": "SAVINGS"},
    "account_type-CREDIT_CARD": lambda w: {"account_type": "CREDIT_CARD"},
    "account_type-LOAN-none": lambda w: {"account_type": "LOAN"},
    **{f"origin-{o}": (lambda w, o=o: {"origin": o}) for o in ORIGINS},
    "included_statuses-one": lambda w: {"included_statuses": "PENDING"},
    "included_statuses-two": lambda w: {"included_statuses": "BOOKED,PENDING"},
    "excluded_statuses-one": lambda w: {"excluded_statuses": "BOOKED"},
    "excluded_statuses-three": lambda w: {"excluded_statuses": "BOOKED,PENDING,REFUNDED"},
    "included-and-excluded": lambda w: {"included_statuses": "BOOKED,PENDING,OTHER",
                                        "excluded_statuses": "PENDING,CANCELLED"},
    "min_amount-decimals": lambda w: {"min_amount": "-50.5"},
    "max_amount-decimals": lambda w: {"max_amount": "-10.25"},
    "min-and-max-amount": lambda w: {"min_amount": "-50.5", "max_amount": "-10.25"},
    "max_amount-negative-debits": lambda w: {"max_amount": "-50"},
    "min_amount-positive-credits": lambda w: {"min_amount": "0.01"},
    "amount-bounds-inclusive": lambda w: (lambda c: {
        "min_amount": _amount_text(c), "max_amount": _amount_text(c)})(
            _some(w.txs, lambda t: t.amount_cents % 10 != 0).amount_cents),
    "amount-as-written": lambda w: {"amount": _amount_text(
        _some(w.txs, lambda t: t.amount_cents % 10 != 0).amount_cents)},
    "amount-one-decimal": lambda w: {"amount": _amount_text(
        _some(w.txs, lambda t: t.amount_cents % 10 == 0 and t.amount_cents % 100).amount_cents)},
    "amount-two-decimals-padded": lambda w: {"amount": "{:.2f}".format(_euros(
        _some(w.txs, lambda t: t.amount_cents % 10 == 0).amount_cents))},
    "amount-third-decimal-rounds": lambda w: {"amount": "{:.2f}3".format(_euros(
        _some(w.txs, lambda t: t.amount_cents % 100 != 0).amount_cents))},
    "amount-whole": lambda w: {"amount": _amount_text(
        _some(w.txs, lambda t: t.amount_cents % 100 == 0).amount_cents)},
    "amount-exponent": lambda w: {"amount": _exponent_text(
        _some(w.txs, lambda t: t.amount_cents % 100 != 0).amount_cents)},
    "start_date": lambda w: {"start_date": str(_median_date(w.txs))},
    "end_date": lambda w: {"end_date": str(_median_date(w.txs))},
    "start-equals-end-inclusive": lambda w: {"start_date": str(_median_date(w.txs)),
                                             "end_date": str(_median_date(w.txs))},
    "one-paris-day": lambda w: {"start_date": str(_median_date(w.txs)),
                                "end_date": str(_median_date(w.txs) + DAY - 1)},
    "start_date-just-after-a-day": lambda w: {"start_date": str(_median_date(w.txs) + 1),
                                              "end_date": str(_next_date(w.txs))},
    "start_import_date-inclusive": lambda w: {"start_import_date": str(
        sorted(t.import_date for t in w.txs)[len(w.txs) * 3 // 4])},
    "category_id": lambda w: {"category_id": "SUPERMARKET"},
    "category_id-uncategorized": lambda w: {"category_id": "UNCATEGORIZED"},
    "combination-account-status-amount": lambda w: {
        "account_id": str(next(iter(w.data.accounts))), "included_statuses": "BOOKED",
        "min_amount": "-100", "max_amount": "100"},
    "combination-type-dates-sort": lambda w: {
        "account_type": "CHECKINGS", "start_date": str(_median_date(w.txs) - 90 * DAY),
        "end_date": str(_median_date(w.txs)), "sort": "-amount"},
    "combination-origin-category-import": lambda w: {
        "origin": "TRANSACTION", "category_id": "UNCATEGORIZED",
        "start_import_date": str(_median_date(w.txs)), "excluded_statuses": "PENDING"},
    "min-greater-than-max-none": lambda w: {"min_amount": "10", "max_amount": "-10"},
    "start-after-end-none": lambda w: {"start_date": str(_median_date(w.txs) + DAY),
                                       "end_date": str(_median_date(w.txs))},
    "unknown-account_id-none": lambda w: {"account_id": "123456789"},
    "foreign-account_id-none": lambda w: {"account_id": str(next(iter(w.other.accounts)))},
    "malformed-account_id-none": lambda w: {"account_id": "abc"},
    "unknown-category-none": lambda w: {"category_id": "NO_SUCH_CATEGORY"},
    "huge-amount-none": lambda w: {"amount": "1e30"},
    "huge-bounds-none": lambda w: {"min_amount": "1e999999999"},
    "tiny-amount-bound": lambda w: {"max_amount": "-1e-999999999"},
    "unknown-parameter-ignored": lambda w: {"colour": "blue", "x-scope": "all"},
}


async def test_transaction_filters_match_the_ground_truth(world: World) -> None:
    total = len(world.txs)
    by_id = {t.id: t for t in world.txs}
    for case, build in TX_CASES.items():
        params = build(world)
        expected = expected_txs(world.data, params)
        got = await world.api.all_pages("/transactions", world.token, **params)
        assert ids(got) == expected, (case, params)
        if case.endswith("-none"):
            assert expected == [], case
        elif case != "unknown-parameter-ignored":
            assert 0 < len(expected) < total, (case, params, len(expected))
        # The answers are the records themselves.
        for item in got[:5]:
            record = by_id[int(item["id"])]
            assert money(item["amount"]) == record.amount_cents
            assert item["date"] == record.date
            assert item["status"] == record.status


async def test_inclusive_bounds_are_exercised(world: World) -> None:
    """The boundary cases above really have items on the boundary."""
    date = _median_date(world.txs)
    assert any(t.date == date for t in world.txs)
    on_day = expected_txs(world.data, {"start_date": str(date), "end_date": str(date)})
    assert on_day
    assert expected_txs(world.data, {"start_date": str(date + 1),
                                     "end_date": str(date + DAY - 1)}) == []
    imported = sorted(t.import_date for t in world.txs)[len(world.txs) * 3 // 4]
    got = ids(await world.api.all_pages("/transactions", world.token,
                                        start_import_date=str(imported)))
    by_id = {t.id: t for t in world.txs}
    assert any(by_id[i].import_date == imported for i in got)
    # A 50 € debit matches max_amount=-50, not min_amount=50.
    debit = next(t for t in world.txs if t.amount_cents < 0)
    text = _amount_text(debit.amount_cents)
    assert debit.id in ids(await world.api.all_pages("/transactions", world.token,
                                                     max_amount=text, min_amount=text))
    assert debit.id not in ids(await world.api.all_pages("/transactions", world.token,
                                                         min_amount=text.lstrip("-")))


# --- sorting -------------------------------------------------------------------------------
async def test_default_transaction_order(world: World) -> None:
    got = ids(await world.api.all_pages("/transactions", world.token))
    expected = [t.id for t in sorted(world.txs, key=lambda t: (t.import_date, -t.id))]
    assert got == expected
    # import_date ties exist, so "then id descending" is really tested.
    imports = [t.import_date for t in world.txs]
    assert len(set(imports)) < len(imports)
    assert got != [t.id for t in sorted(world.txs, key=lambda t: (t.import_date, t.id))]


TX_SORTS = ("date", "-date", "import_date", "-import_date", "amount", "-amount",
            "-date,amount", "amount,-date", "import_date,-amount,date", "-import_date,date",
            "-amount,-import_date", "date,import_date,amount")


async def test_transaction_sorts(world: World) -> None:
    by_id = {t.id: t for t in world.txs}
    for sort in TX_SORTS:
        got = ids(await world.api.all_pages("/transactions", world.token, sort=sort))
        assert got == expected_txs(world.data, {"sort": sort}), sort
        # Ties on the sort fields exist, and are broken by id ascending.
        fields = [f.lstrip("-") for f in sort.split(",")]
        keys = [tuple(TX_KEYS[f](by_id[i]) for f in fields) for i in got]
        tied = [(a, b) for a, b, ka, kb in zip(got, got[1:], keys, keys[1:], strict=False)
                if ka == kb]
        if len(fields) == 1:
            assert tied, f"{sort}: no ties, the tie-break is not exercised"
        assert all(a < b for a, b in tied), sort


async def test_filters_and_sort_combine_on_one_account(world: World) -> None:
    account_id = str(list(world.data.accounts)[2])
    params = {"account_id": account_id, "sort": "-date,amount", "excluded_statuses": "BOOKED"}
    got = ids(await world.api.all_pages("/transactions", world.token, **params))
    assert got == expected_txs(world.data, params)
    assert got


# --- pagination ------------------------------------------------------------------------
async def test_pagination_edges(world: World) -> None:
    api, token = world.api, world.token
    full = expected_txs(world.data, {})
    assert len(full) == 900
    assert ids(await api.ok("/transactions", token, limit="1")) == full[:1]
    assert ids(await api.ok("/transactions", token, limit="1", page="2")) == full[1:2]
    assert ids(await api.ok("/transactions", token, limit="1", page="900")) == full[-1:]
    assert ids(await api.ok("/transactions", token)) == full[:100]  # default limit 100
    assert ids(await api.ok("/transactions", token, page="2")) == full[100:200]
    assert ids(await api.ok("/transactions", token, limit="500")) == full[:500]
    assert ids(await api.ok("/transactions", token, limit="500", page="2")) == full[500:]
    assert ids(await api.ok("/transactions", token, limit="0500", page="01")) == full[:500]
    for limit, page in (("500", "3"), ("1", "901"), ("100", "10"), ("7", "1000")):
        reply = await api.get("/transactions", token, limit=limit, page=page)
        assert reply.status == 200
        assert reply.json() == []
    # Bare arrays, and no count header.
    reply = await api.get("/transactions", token, limit="3")
    assert isinstance(reply.json(), list)
    assert "X-Total-Count" not in reply.headers
    assert "Link" not in reply.headers


@pytest.mark.parametrize("sort", [None, "-amount", "date,-import_date"])
async def test_pages_concatenate_to_the_full_list(world: World, sort: str | None) -> None:
    for limit in (1, 13, 100, 300, 333, 500):
        params: dict[str, str] = {}
        if limit == 1:  # a short list, to keep the number of requests down
            params = {"account_id": str(next(iter(world.data.accounts))),
                      "included_statuses": "PENDING,REFUNDED"}
        if sort is not None:
            params["sort"] = sort
        expected = expected_txs(world.data, params)
        pages: list[int] = []
        page = 1
        while True:
            items = await world.api.ok("/transactions", world.token, **params,
                                       page=str(page), limit=str(limit))
            assert len(items) <= limit
            pages += ids(items)
            if len(items) < limit:
                break
            page += 1
        assert pages == expected, (limit, sort)
        assert page == len(expected) // limit + 1


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draw=st.data())
async def test_random_transaction_queries_match_the_ground_truth(world: World,
                                                                 draw: st.DataObject) -> None:
    txs = world.txs
    dates = sorted({t.date for t in txs})
    imports = sorted({t.import_date for t in txs})
    amounts = sorted({t.amount_cents for t in txs})
    statuses = st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3,
                        unique=True).map(",".join)
    amount_text = st.one_of(
        st.sampled_from(amounts).map(_amount_text),
        st.decimals(min_value=-3000, max_value=3000, places=2).map(str),
        st.integers(-3000, 3000).map(str))
    date_text = st.one_of(st.sampled_from(dates),
                          st.integers(dates[0] - DAY, dates[-1] + DAY)).map(str)
    values: dict[str, st.SearchStrategy[str]] = {
        "account_id": st.sampled_from([*map(str, world.data.accounts), "42",
                                       str(next(iter(world.other.accounts)))]),
        "account_type": st.sampled_from(ACCOUNT_TYPES),
        "origin": st.sampled_from(ORIGINS),
        "included_statuses": statuses,
        "excluded_statuses": statuses,
        "min_amount": amount_text,
        "max_amount": amount_text,
        "amount": st.sampled_from(amounts).map(_amount_text),
        "start_date": date_text,
        "end_date": date_text,
        "start_import_date": st.one_of(st.sampled_from(imports).map(str), date_text),
        "category_id": st.sampled_from(CATEGORY_IDS),
    }
    names = draw.draw(st.lists(st.sampled_from(sorted(values)), max_size=3, unique=True),
                      label="filters")
    params = {name: draw.draw(values[name], label=name) for name in names}
    fields = draw.draw(st.lists(st.sampled_from(sorted(TX_KEYS)), max_size=3, unique=True),
                       label="sort fields")
    if fields:
        params["sort"] = ",".join(("-" if draw.draw(st.booleans()) else "") + f
                                  for f in fields)
    expected = expected_txs(world.data, params)
    if draw.draw(st.booleans(), label="one page"):
        params["limit"] = str(draw.draw(st.integers(1, 500), label="limit"))
        params["page"] = str(draw.draw(st.integers(1, 4), label="page"))
        got = ids(await world.api.ok("/transactions", world.token, **params))
        assert got == paged(expected, params), params
    else:
        got = ids(await world.api.all_pages("/transactions", world.token, **params))
        assert got == expected, params


# --- accounts and connections --------------------------------------------------------------
@attrs.frozen
class Rich:
    """A user with 12 accounts over two connections (one FAILED), plus three test-bank
    connections created in the same second (ties on name, creation_date and balance)."""

    api: Api
    token: str
    data: UserData


@pytest.fixture
async def rich(http: aiohttp.ClientSession) -> AsyncIterator[Rich]:
    async with OxlinSandbox(users=8, seed=5, accounts_per_user=12,
                            transactions_per_account=2) as box:
        user_id = int(box.users[7].id)
        apply_testbank(box.state, user_id, load_testbank("fr/hermione_granger"))
        apply_testbank(box.state, user_id, load_testbank("fr/harry_potter"))
        apply_testbank(box.state, user_id, load_testbank("fr/harry_potter"), channel="REDIRECT")
        api = Api(http, box)
        yield Rich(api, await api.user_token(7, "accounts_read"), box.state.data(user_id))


def _accounts(rich: Rich) -> list[Account]:
    return list(rich.data.accounts.values())


ACCOUNT_CASES: dict[str, Callable[[Rich], dict[str, str]]] = {
    "connection_id": lambda r: {"connection_id": str(list(r.data.connections)[1])},
    **{f"type-{t}": (lambda r, t=t: {"type": t}) for t in ACCOUNT_TYPES},
    "status-ACTIVE": lambda r: {"status": "ACTIVE"},
    "status-rare": lambda r: {"status": next(a.status for a in _accounts(r)
                                             if a.status != "ACTIVE")},
    "status-MANUAL-none": lambda r: {"status": "MANUAL"},
    "usage-PROFESSIONAL": lambda r: {"usage": "PROFESSIONAL"},
    "usage-PERSONAL": lambda r: {"usage": "PERSONAL"},
    "q-name-other-case": lambda r: {"q": "pRÊt"},
    "q-name-lower": lambda r: {"q": "livret"},
    "q-account-number": lambda r: {"q": next(a.account_number for a in _accounts(r)
                                             if a.type == "LOAN")[3:8]},
    "q-card-number": lambda r: {"q": "xxxx " + next(
        a.account_number for a in _accounts(r) if a.type == "CREDIT_CARD")[-4:]},
    "q-iban-lower": lambda r: {"q": next(a.iban for a in _accounts(r)
                                         if a.iban and a.type == "SAVINGS")[:12].lower()},
    "q-none": lambda r: {"q": "no such account"},
    "combination": lambda r: {"connection_id": str(next(iter(r.data.connections))),
                              "type": "CREDIT_CARD", "status": "ACTIVE"},
    "unknown-connection-none": lambda r: {"connection_id": "999"},
    **{f"sort-{s}": (lambda r, s=s: {"sort": s}) for s in (
        "name", "-name", "creation_date", "-creation_date", "balance", "-balance",
        "-creation_date,name", "balance,-name", "name,-balance,creation_date")},
    "sort-with-filter": lambda r: {"sort": "-name", "usage": "PERSONAL"},
}


async def test_account_filters_and_sorts(rich: Rich) -> None:
    for case, build in ACCOUNT_CASES.items():
        params = build(rich)
        expected = expected_accounts(rich.data, params)
        got = await rich.api.all_pages("/accounts", rich.token, **params)
        assert ids(got) == expected, (case, params)
        if case.endswith("-none"):
            assert expected == [], case
        elif not case.startswith("sort-") or case == "sort-with-filter":
            assert 0 < len(expected) < len(rich.data.accounts), (case, params)
        for item in got:
            assert money(item["balance"]) == rich.data.accounts[int(item["id"])].balance_cents


async def test_account_name_sort_is_case_insensitive(rich: Rich) -> None:
    got = ids(await rich.api.all_pages("/accounts", rich.token, sort="name"))
    by_id = rich.data.accounts
    names = [by_id[i].name for i in got]
    assert names == sorted(names, key=str.casefold)
    assert names != sorted(names), "the data do not tell case-insensitive from not"
    # Ties (the same name, the same creation date, the same balance) come in id order.
    for field in ("name", "creation_date", "balance"):
        got = ids(await rich.api.all_pages("/accounts", rich.token, sort=f"-{field}"))
        keys = [ACCOUNT_KEYS[field](by_id[i]) for i in got]
        tied = [(a, b) for a, b, ka, kb in zip(got, got[1:], keys, keys[1:], strict=False)
                if ka == kb]
        assert tied, field
        assert all(a < b for a, b in tied)


async def test_accounts_pagination(rich: Rich) -> None:
    full = expected_accounts(rich.data, {"sort": "-balance"})
    pages = []
    for page in range(1, 10):
        items = ids(await rich.api.ok("/accounts", rich.token, sort="-balance", limit="5",
                                      page=str(page)))
        pages += items
        if len(items) < 5:
            break
    assert pages == full
    assert ids(await rich.api.ok("/accounts", rich.token, limit="1")) == sorted(
        rich.data.accounts)[:1]
    assert await rich.api.ok("/accounts", rich.token, page="99") == []


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(draw=st.data())
async def test_random_account_queries_match_the_ground_truth(rich: Rich,
                                                             draw: st.DataObject) -> None:
    accounts = _accounts(rich)
    words = sorted({w for a in accounts for w in (a.name or "").split()}
                   | {(a.iban or "")[4:9] for a in accounts} | {"", "X", "é"})
    values: dict[str, st.SearchStrategy[str]] = {
        "connection_id": st.sampled_from([*map(str, rich.data.connections), "1"]),
        "type": st.sampled_from(ACCOUNT_TYPES),
        "status": st.sampled_from(ACCOUNT_STATUSES),
        "usage": st.sampled_from(("PERSONAL", "PROFESSIONAL")),
        "q": st.sampled_from(words).map(lambda w: w.swapcase() if len(w) % 2 else w),
    }
    names = draw.draw(st.lists(st.sampled_from(sorted(values)), max_size=3, unique=True))
    params = {name: draw.draw(values[name], label=name) for name in names}
    fields = draw.draw(st.lists(st.sampled_from(sorted(ACCOUNT_KEYS)), max_size=3,
                                unique=True))
    if fields:
        params["sort"] = ",".join(("-" if draw.draw(st.booleans()) else "") + f
                                  for f in fields)
    params["limit"] = str(draw.draw(st.integers(1, 20), label="limit"))
    params["page"] = str(draw.draw(st.integers(1, 3), label="page"))
    got = ids(await rich.api.ok("/accounts", rich.token, **params))
    assert got == paged(expected_accounts(rich.data, params), params), params


CONNECTION_CASES: list[dict[str, str]] = [
    {}, {"status": "SUCCESS"}, {"status": "FAILED"}, {"status": "RUNNING"},
    {"provider_id": "9999"}, {"provider_id": "nope"}, {"status": "SUCCESS", "provider_id": "9999"},
    {"sort": "name"}, {"sort": "-name"}, {"sort": "creation_date"}, {"sort": "-creation_date"},
    {"sort": "-creation_date,name"}, {"sort": "name,-creation_date"},
    {"sort": "-name", "status": "SUCCESS"},
]


async def test_connection_filters_and_sorts(rich: Rich) -> None:
    assert len(rich.data.connections) == 5
    for params in CONNECTION_CASES:
        expected = expected_connections(rich.data, params)
        got = ids(await rich.api.all_pages("/connections", rich.token, **params))
        assert got == expected, params
        if params.get("status") == "RUNNING" or params.get("provider_id") == "nope":
            assert got == []
        elif "provider_id" in params or "status" in params:
            assert 0 < len(got) < len(rich.data.connections), params


async def test_connection_statuses_and_ties(rich: Rich) -> None:
    statuses = {c.status for c in rich.data.connections.values()}
    assert {"SUCCESS", "FAILED"} <= statuses
    # A closed connection shows up under status=CLOSED.
    closed = next(iter(rich.data.connections.values()))
    closed.closed = True
    assert ids(await rich.api.ok("/connections", rich.token, status="CLOSED")) == [closed.id]
    # The three test-bank connections tie on name and creation date: id ascending.
    bank = [c.id for c in rich.data.connections.values() if c.provider_id == "9999"]
    for sort in ("name", "-name", "creation_date", "-creation_date"):
        got = ids(await rich.api.ok("/connections", rich.token, sort=sort))
        assert [i for i in got if i in bank] == sorted(bank)
    got = ids(await rich.api.ok("/connections", rich.token, limit="1", page="2"))
    assert got == [sorted(rich.data.connections)[1]]
    assert ids(await rich.api.ok("/connections", rich.token, limit="2", page="3")) == [
        max(rich.data.connections)]
    assert await rich.api.ok("/connections", rich.token, limit="2", page="4") == []


# --- bad parameters -------------------------------------------------------------------------
BAD_PARAMETERS = [
    ("/transactions", {"sort": "name"}),
    ("/transactions", {"sort": "creation_date"}),
    ("/transactions", {"sort": "date,"}),
    ("/transactions", {"sort": ",date"}),
    ("/transactions", {"sort": ""}),
    ("/transactions", {"sort": "-"}),
    ("/transactions", {"sort": "--date"}),
    ("/transactions", {"sort": "Date"}),
    ("/transactions", {"sort": "date,-date"}),
    ("/transactions", {"sort": "amount,amount"}),
    ("/transactions", {"origin": "FOO"}),
    ("/transactions", {"origin": "transaction"}),
    ("/transactions", {"account_type": "checkings"}),
    ("/transactions", {"account_type": "CURRENT"}),
    ("/transactions", {"included_statuses": "booked"}),
    ("/transactions", {"included_statuses": "BOOKED,NOPE"}),
    ("/transactions", {"included_statuses": "BOOKED,"}),
    ("/transactions", {"excluded_statuses": "Pending"}),
    ("/transactions", {"min_amount": "abc"}),
    ("/transactions", {"max_amount": "1,5"}),
    ("/transactions", {"amount": "ten"}),
    ("/transactions", {"amount": "NaN"}),
    ("/transactions", {"min_amount": "Infinity"}),
    ("/transactions", {"max_amount": ""}),
    ("/transactions", {"min_amount": "1_000"}),
    ("/transactions", {"max_amount": " 5"}),
    ("/transactions", {"amount": "\u0663"}),
    ("/transactions", {"amount": "--5"}),
    ("/transactions", {"amount": "0x10"}),
    ("/transactions", {"start_date": "2024-01-01"}),
    ("/transactions", {"end_date": "1.5"}),
    ("/transactions", {"start_import_date": "yesterday"}),
    ("/transactions", {"start_date": ""}),
    ("/transactions", {"start_date": "--5"}),
    ("/transactions", {"end_date": "1_700_000_000"}),
    ("/transactions", {"start_import_date": "\u0663"}),
    ("/transactions", {"limit": "--1"}),
    ("/transactions", {"page": "--2"}),
    ("/transactions", {"limit": " 10"}),
    ("/transactions", {"limit": "501"}),
    ("/transactions", {"limit": "0"}),
    ("/transactions", {"limit": "-1"}),
    ("/transactions", {"limit": "ten"}),
    ("/transactions", {"limit": "1.5"}),
    ("/transactions", {"limit": ""}),
    ("/transactions", {"page": "0"}),
    ("/transactions", {"page": "-2"}),
    ("/transactions", {"page": "1.0"}),
    ("/transactions", {"page": "two"}),
    ("/accounts", {"sort": "date"}),
    ("/accounts", {"sort": "name,"}),
    ("/accounts", {"sort": "balance,-balance"}),
    ("/accounts", {"type": "checkings"}),
    ("/accounts", {"type": "PEA"}),
    ("/accounts", {"status": "active"}),
    ("/accounts", {"usage": "personal"}),
    ("/accounts", {"usage": "BUSINESS"}),
    ("/accounts", {"limit": "501"}),
    ("/accounts", {"page": "0"}),
    ("/connections", {"sort": "balance"}),
    ("/connections", {"sort": "name,"}),
    ("/connections", {"sort": "name,-name"}),
    ("/connections", {"status": "success"}),
    ("/connections", {"status": "OK"}),
    ("/connections", {"limit": "0"}),
    ("/connections", {"page": "x"}),
]


@pytest.mark.parametrize("endpoint", ["/transactions", "/accounts", "/connections"])
async def test_bad_parameters_are_bad_parameter(world: World, endpoint: str) -> None:
    cases = [params for path, params in BAD_PARAMETERS if path == endpoint]
    assert cases
    for params in cases:
        reply = await world.api.get(endpoint, world.token, **params)
        assert reply.status == 400, (endpoint, params)
        assert_error(reply, 400, "BAD_PARAMETER")
        # Even when nothing would match anyway.
        empty = {"account_id": "42"} if endpoint == "/transactions" else {
            "status" if endpoint == "/connections" else "connection_id":
                "RUNNING" if endpoint == "/connections" else "42"}
        if set(empty) & set(params):
            continue
        reply = await world.api.get(endpoint, world.token, **params, **empty)
        assert reply.status == 400, (endpoint, params, empty)
