"""Plumbing for the emulator tests: a plain HTTP driver (`Api`) and ground-truth readers."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import aiohttp
import attrs

from oxlin_async.testing import OxlinSandbox, UserData
from oxlin_async.testing._records import Account, Connection, Transaction

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



def all_txs(data: UserData) -> list[Transaction]:
    return [t for txs in data.transactions.values() for t in txs]


def ids(items: Iterable[Mapping[str, Any]]) -> list[int]:
    return [int(item["id"]) for item in items]


def money(value: Decimal | int) -> int:
    """A JSON amount (parsed as Decimal) in cents, checking it has at most 2 decimals."""
    cents = Decimal(value) * 100
    assert cents == cents.to_integral_value(), value
    return int(cents)


# --- expectations, computed from the ground truth records ------------------------------
def _cmp(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def expected_order(records: Iterable[Any], sort: str | None,
                   keys: Mapping[str, Callable[[Any], Any]],
                   default: Callable[[Any], Any]) -> list[Any]:
    """`sort=-a,b` by comparison, field by field, then id ascending (docs/oxlin-api §8)."""
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


def euros(cents: int) -> Decimal:
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
        checks.append(euros(t.amount_cents) >= Decimal(p["min_amount"]))
    if "max_amount" in p:
        checks.append(euros(t.amount_cents) <= Decimal(p["max_amount"]))
    if "amount" in p:
        wanted = Decimal(p["amount"])
        # A value too large to round to cents (1e30) matches nothing.
        checks.append(wanted.adjusted() < 20 and euros(t.amount_cents) == wanted.quantize(CENT))
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


