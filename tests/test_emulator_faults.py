"""The emulator's fault injection, observed over real HTTP (docs/oxlin-api §11, `Faults`).

A plain `aiohttp.ClientSession` drives the server; request loops stay short.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import attrs
import pytest
from _helpers import FakeClock

from oxlin_async.testing import Faults, OxlinSandbox

ERRORS = {429: "TOO_MANY_REQUESTS", 500: "INTERNAL_ERROR", 502: "BAD_GATEWAY",
          503: "SERVICE_UNAVAILABLE", 504: "GATEWAY_TIMEOUT"}
MIXED = {"rate_429": 0.1, "rate_500": 0.1, "rate_502": 0.1, "rate_503": 0.1,
         "rate_drop": 0.1, "rate_truncate": 0.1}
REDIRECT = "https://app.example/callback"


@attrs.define
class Box:
    sandbox: OxlinSandbox
    http: aiohttp.ClientSession
    token: str
    refresh_token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def credentials(self) -> dict[str, str]:
        return {"client_id": self.sandbox.client_id,
                "client_secret": self.sandbox.client_secret}

    def api(self, path: str) -> str:
        return f"{self.sandbox.api_url}{path}"

    async def outcome(self, method: str = "GET", url: str | None = None,
                      **kwargs: Any) -> str:
        """What one request met: "ok", an HTTP status, "drop" or "truncate"."""
        if url is None:
            url = self.api("/accounts")
            kwargs.setdefault("headers", self.bearer)
        try:
            async with self.http.request(method, url, **kwargs) as resp:
                raw = await resp.read()
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
            return "drop"
        if resp.status >= 300:
            return str(resp.status)
        try:
            json.loads(raw)
        except ValueError:
            return "truncate"
        return "ok"


async def _login(sandbox: OxlinSandbox, http: aiohttp.ClientSession) -> tuple[str, str]:
    user = sandbox.users[0]
    async with http.post(f"{sandbox.auth_url}/token", data={
            "grant_type": "password", "username": user.email, "password": user.password,
            "client_id": sandbox.client_id, "client_secret": sandbox.client_secret}) as resp:
        assert resp.status == 200
        body = await resp.json()
    return body["access_token"], body["refresh_token"]


@pytest.fixture
async def box() -> AsyncIterator[Box]:
    async with OxlinSandbox(users=1, seed=9, accounts_per_user=2,
                            transactions_per_account=25) as sandbox, \
            aiohttp.ClientSession() as http:
        token, refresh_token = await _login(sandbox, http)  # before any fault is set
        yield Box(sandbox, http, token, refresh_token)


# ---------------------------------------------------------------------- error answers
@pytest.mark.parametrize("status", sorted(ERRORS))
async def test_injected_error_answers(box: Box, status: int) -> None:
    box.sandbox.set_faults(**{f"rate_{status}": 1.0}, retry_after=3)
    targets = [
        ("GET", box.api("/accounts"), {"headers": box.bearer}),
        ("GET", box.api("/transactions"), {"headers": box.bearer, "params": {"limit": "x"}}),
        ("POST", f"{box.sandbox.auth_url}/token",
         {"data": {"grant_type": "refresh_token", "refresh_token": box.refresh_token,
                   **box.credentials}}),
        ("POST", f"{box.sandbox.embed_url}/widget/widget_session",
         {"data": {**box.credentials, "access_token": box.token}}),
        ("POST", f"{box.sandbox.base_url}/embed/widget_session",
         {"data": {**box.credentials, "access_token": box.token}}),
        ("POST", box.api("/users"),
         {"headers": box.bearer, "json": {"email": "new@example.com", "password": "pw"}}),
    ]
    for method, url, kwargs in targets:
        async with box.http.request(method, url, **kwargs) as resp:
            assert resp.status == status, (method, url)
            body = await resp.json()
            assert set(body) == {"error", "error_description"}
            assert body["error"] == ERRORS[status]
            assert resp.headers["X-Request-ID"]
            if status in (429, 503):
                assert resp.headers["Retry-After"] == "3"
            else:
                assert "Retry-After" not in resp.headers
    # The fault answered instead of the handler: nothing happened behind it.
    assert box.refresh_token in box.sandbox.state.refresh_tokens
    assert not box.sandbox.state.widget_sessions
    assert box.sandbox.state.user_by_email("new@example.com") is None
    assert dict(box.sandbox.state.counters.faults) == {str(status): len(targets)}
    # The requests were still counted.
    assert box.sandbox.state.counters.requests["GET /api/v2.1/accounts"] == 1


async def test_retry_after_follows_the_setting(box: Box) -> None:
    for seconds in (1, 7, 30):
        box.sandbox.set_faults(rate_429=1.0, retry_after=seconds)
        async with box.http.get(box.api("/accounts"), headers=box.bearer) as resp:
            assert resp.status == 429
            assert resp.headers["Retry-After"] == str(seconds)


# ------------------------------------------------------------------ drop and truncate
async def test_a_dropped_connection_breaks_the_body(box: Box) -> None:
    box.sandbox.set_faults(rate_drop=1.0)
    with pytest.raises((aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError)):
        async with box.http.get(box.api("/accounts"), headers=box.bearer) as resp:
            # The status and headers arrive; the body promised by Content-Length does not.
            assert resp.status == 200
            assert resp.headers["X-Request-ID"]
            assert int(resp.headers["Content-Length"]) > 2
            await resp.read()
    assert box.sandbox.state.counters.faults["drop"] == 1
    # A dropped token answer: the server issued the token, the client never saw it.
    tokens = len(box.sandbox.state.tokens)
    assert await box.outcome("POST", f"{box.sandbox.auth_url}/token", data={
        "grant_type": "client_credentials", **box.credentials}) == "drop"
    assert len(box.sandbox.state.tokens) == tokens + 1
    # The same session works again once the fault is off.
    box.sandbox.set_faults(rate_drop=0.0)
    assert await box.outcome() == "ok"
    assert box.sandbox.state.counters.faults["drop"] == 2


async def test_a_truncated_body_is_a_200_with_invalid_json(box: Box) -> None:
    async with box.http.get(box.api("/accounts"), headers=box.bearer) as resp:
        full = await resp.read()
    json.loads(full)
    box.sandbox.set_faults(rate_truncate=1.0)
    async with box.http.get(box.api("/accounts"), headers=box.bearer) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        raw = await resp.read()
        assert int(resp.headers["Content-Length"]) == len(raw)
    assert 0 < len(raw) < len(full)
    assert full.startswith(raw)
    with pytest.raises(ValueError):
        json.loads(raw)
    assert box.sandbox.state.counters.faults["truncate"] == 1


async def test_drop_and_truncate_spare_error_answers(box: Box) -> None:
    """Only successful answers with a body are cut; errors stay whole and uncounted."""
    box.sandbox.set_faults(rate_truncate=0.5, rate_drop=0.5)
    for _ in range(5):
        async with box.http.get(box.api("/accounts/1"), headers=box.bearer) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"] == "RESOURCE_UNKNOWN"
        async with box.http.get(box.api("/accounts")) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "invalid_token"
    assert not box.sandbox.state.counters.faults


# --------------------------------------------------------------------------- latency
async def test_latency_delays_every_answer(box: Box) -> None:
    box.sandbox.set_faults(latency=0.15)
    for method, url, kwargs in (
            ("GET", box.api("/accounts"), {"headers": box.bearer}),
            ("POST", f"{box.sandbox.auth_url}/token",
             {"data": {"grant_type": "client_credentials", **box.credentials}})):
        started = time.monotonic()
        async with box.http.request(method, url, **kwargs) as resp:
            assert resp.status == 200
            await resp.read()
        assert time.monotonic() - started >= 0.15
    box.sandbox.set_faults(latency=0.05, jitter=0.1)
    started = time.monotonic()
    assert await box.outcome() == "ok"
    assert time.monotonic() - started >= 0.05
    assert not box.sandbox.state.counters.faults


# ---------------------------------------------------------------------- early expiry


async def test_early_expiry_kills_tokens_before_expires_in(box: Box) -> None:
    state = box.sandbox.state
    clock = FakeClock(state.clock())
    state.clock = clock  # no sleeping: the test moves time
    box.sandbox.set_faults(rate_early_expiry=1.0)
    for grant in ({"grant_type": "client_credentials"},
                  {"grant_type": "refresh_token", "refresh_token": box.refresh_token}):
        async with box.http.post(f"{box.sandbox.auth_url}/token",
                                 data={**grant, **box.credentials}) as resp:
            assert resp.status == 200
            body = await resp.json()
        assert body["expires_in"] == 3600  # the answer does not tell
        issued_at = clock.now
        lifetime = state.tokens[body["access_token"]].expires_at - issued_at
        assert 0 <= lifetime <= 1800
        path = "/categories" if "refresh_token" not in body else "/users/me"
        clock.now = issued_at + lifetime + 1  # well before expires_in
        async with box.http.get(box.api(path), headers={
                "Authorization": f"Bearer {body['access_token']}"}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "invalid_token"
            assert resp.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        clock.now = issued_at
    # Without the fault a token lives its whole expires_in.
    box.sandbox.set_faults(rate_early_expiry=0.0)
    async with box.http.post(f"{box.sandbox.auth_url}/token", data={
            "grant_type": "client_credentials", **box.credentials}) as resp:
        body = await resp.json()
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    clock.now += body["expires_in"] - 1
    async with box.http.get(box.api("/categories"), headers=headers) as resp:
        assert resp.status == 200
    clock.now += 2
    async with box.http.get(box.api("/categories"), headers=headers) as resp:
        assert resp.status == 401


async def test_early_expiry_rate_is_a_probability(box: Box) -> None:
    state = box.sandbox.state
    box.sandbox.set_faults(rate_early_expiry=0.5, seed=4)
    lifetimes = []
    for _ in range(30):
        before = state.clock()
        async with box.http.post(f"{box.sandbox.auth_url}/token", data={
                "grant_type": "client_credentials", **box.credentials}) as resp:
            body = await resp.json()
        lifetimes.append(state.tokens[body["access_token"]].expires_at - before)
    short = [t for t in lifetimes if t <= 1801]
    assert 0 < len(short) < len(lifetimes)
    assert all(t >= 3599 for t in lifetimes if t > 1801)


# ---------------------------------------------------------------- insert while paging
def _default_order(sandbox: OxlinSandbox) -> list[int]:
    data = sandbox.state.data(int(sandbox.users[0].id))
    txs = [t for txs in data.transactions.values() for t in txs]
    return [t.id for t in sorted(txs, key=lambda t: (t.import_date, -t.id))]


async def test_insert_while_paging_grows_the_list_between_pages(box: Box) -> None:
    sandbox = box.sandbox
    original = _default_order(sandbox)
    assert len(original) == 50
    sandbox.set_faults(insert_while_paging=3)
    url, limit = box.api("/transactions"), 10

    async def page(n: int) -> list[int]:
        async with box.http.get(url, headers=box.bearer,
                                params={"page": str(n), "limit": str(limit)}) as resp:
            assert resp.status == 200
            return [int(t["id"]) for t in await resp.json()]

    first = await page(1)
    assert first == original[:limit]  # answered before the insertion
    grown = _default_order(sandbox)
    assert len(grown) == len(original) + 3
    second = await page(2)
    assert second == grown[limit:2 * limit]  # the shifted list, as the ground truth has it
    assert len(_default_order(sandbox)) == len(original) + 6
    assert sandbox.state.counters.faults["insert"] == 6

    new = set(_default_order(sandbox)) - set(original)
    data = sandbox.state.data(int(sandbox.users[0].id))
    labels = {t.id: t.label for txs in data.transactions.values() for t in txs}
    assert len(new) == 6
    assert all(labels[i].endswith(" (new)") for i in new)
    assert min(new) > max(original)

    # Paging to the end meets a list that keeps growing, as an SDK's iterator would.
    seen = first + second
    n = 3
    while len(items := await page(n)) == limit:
        seen += items
        n += 1
        assert n < 20
    seen += items
    final = _default_order(sandbox)
    assert len(final) == len(original) + 3 * n  # one insertion per page request
    # Each page came from the list as it was when asked: the pages add up to the list
    # before the last request, and what was inserted meanwhile went unseen.
    assert len(seen) == len(original) + 3 * (n - 1)
    assert set(final) - set(seen)
    # Other lists are left alone.
    async with box.http.get(box.api("/accounts"), headers=box.bearer) as resp:
        assert resp.status == 200
    assert len(_default_order(sandbox)) == len(final)


# ------------------------------------------------------------------- reproducibility
async def _sequence(seed: int, count: int = 60) -> tuple[list[str], Counter[str]]:
    async with OxlinSandbox(users=1, seed=2, accounts_per_user=1,
                            transactions_per_account=5) as sandbox, \
            aiohttp.ClientSession() as http:
        token, refresh_token = await _login(sandbox, http)
        box = Box(sandbox, http, token, refresh_token)
        sandbox.set_faults(seed=seed, **MIXED)
        outcomes = [await box.outcome() for _ in range(count)]
        return outcomes, Counter(sandbox.state.counters.faults)


async def test_the_same_seed_gives_the_same_outcomes() -> None:
    first, first_counts = await _sequence(11)
    second, second_counts = await _sequence(11)
    other, _ = await _sequence(12)
    assert first == second
    assert first_counts == second_counts
    assert first != other
    # A mix of every kind, and the counters agree with what the client saw.
    assert {"ok", "429", "500", "502", "503", "drop", "truncate"} <= set(first)
    seen = Counter(first)
    del seen["ok"]
    assert seen == first_counts


async def test_set_faults_reseeds_a_running_server(box: Box) -> None:
    box.sandbox.set_faults(seed=5, **MIXED)
    first = [await box.outcome() for _ in range(40)]
    box.sandbox.set_faults(seed=5, **MIXED)
    again = [await box.outcome() for _ in range(40)]
    box.sandbox.set_faults(seed=6, **MIXED)
    other = [await box.outcome() for _ in range(40)]
    assert first == again
    assert first != other
    assert len(set(first)) >= 4


async def test_faults_given_at_construction() -> None:
    async with OxlinSandbox(users=1, seed=3, faults=Faults(seed=1, rate_503=1.0,
                                                           retry_after=9)) as sandbox, \
            aiohttp.ClientSession() as http:
        async with http.post(f"{sandbox.auth_url}/token", data={
                "grant_type": "client_credentials", "client_id": sandbox.client_id,
                "client_secret": sandbox.client_secret}) as resp:
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "9"
        sandbox.set_faults(rate_503=0.0)
        token, _ = await _login(sandbox, http)
        assert token in sandbox.state.tokens
        assert sandbox.state.counters.faults == {"503": 1}


# -------------------------------------------------------------- changes while serving
async def test_set_faults_while_serving_takes_effect(box: Box) -> None:
    sandbox = box.sandbox
    held = sandbox.faults
    assert await box.outcome() == "ok"
    assert sandbox.set_faults(rate_503=1.0) is held  # updated in place
    assert await box.outcome() == "503"
    sandbox.set_faults(rate_503=0.0, rate_429=1.0)
    assert await box.outcome() == "429"
    sandbox.set_faults(Faults(seed=3))  # a whole new setting: no faults
    assert await box.outcome() == "ok"
    sandbox.faults.rate_500 = 1.0  # plain attribute changes work too
    assert await box.outcome() == "500"
    sandbox.faults.rate_500 = 0.0
    assert await box.outcome() == "ok"
    assert dict(sandbox.state.counters.faults) == {"503": 1, "429": 1, "500": 1}


# --------------------------------------------------------------- the widget's pages
async def test_faults_spare_the_widget_pages(box: Box) -> None:
    sandbox, http = box.sandbox, box.http
    async with http.post(f"{sandbox.embed_url}/widget/widget_session",
                         data={**box.credentials, "access_token": box.token}) as resp:
        assert resp.status == 200
        link = (await resp.json())["_links"]["add_connection"]
    sandbox.set_faults(rate_500=1.0, rate_drop=0.0)
    page = f"{link}&redirect_uri={REDIRECT}"
    for _ in range(3):
        async with http.get(page) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/html")
            assert "<form" in await resp.text()
    async with http.post(f"{sandbox.embed_origin}/widget/add_connection",
                         data={"session_id": link.rsplit("=", 1)[1], "redirect_uri": REDIRECT,
                               "action": "cancel"}, allow_redirects=False) as resp:
        assert resp.status == 302
        assert resp.headers["Location"].startswith(REDIRECT)
    assert not sandbox.state.counters.faults
    # The embed *API* and the other hosts do get faults.
    assert await box.outcome("POST", f"{sandbox.embed_url}/widget/widget_session",
                             data={**box.credentials, "access_token": box.token}) == "500"
    assert await box.outcome() == "500"
    assert dict(sandbox.state.counters.faults) == {"500": 2}
    # Truncation and drops spare the pages too.
    sandbox.set_faults(rate_truncate=0.5, rate_drop=0.5)
    for _ in range(4):
        async with http.get(page) as resp:
            assert resp.status == 200
            assert (await resp.text()).rstrip().endswith("</html>")
    assert dict(sandbox.state.counters.faults) == {"500": 2}
