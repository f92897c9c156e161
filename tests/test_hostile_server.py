"""The SDK against a hostile or broken server (issue 9): one mode per misbehaviour.

Every call ends, within a generous bound that only guards against a hang, in a result
or a specific `ox` error; no secret (access token, refresh token, client secret) shows
in the error's str, repr, formatted traceback, or anything reachable through its
``__context__``/``__cause__`` chain and attributes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import json
import math
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from _helpers import client_of
from _payloads import ACCOUNT, CATEGORY, TRANSACTION, USER
from aiohttp import web

import oxlin_async as ox
from oxlin_async import cli
from oxlin_async._auth import BearerAuth, TokenManager
from oxlin_async._options import RequestOptions
from oxlin_async._transport import as_nothing

AT, RT, CS = "at-SECRET-1b7e40", "rt-SECRET-93c4aa", "cs-SECRET-5d20ff"
SECRETS = (AT, RT, CS)
GOOD_TOKEN: dict[str, Any] = {"access_token": AT, "token_type": "Bearer", "expires_in": 3600,
                              "refresh_token": RT, "scope": "accounts_read"}
#: Not a timing assertion: a call that has not ended by then is hung.
BOUND = 60.0
FAST = ox.RetryPolicy(initial_backoff=0.001, max_backoff=0.005)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200, **headers: str) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status,
                        content_type="application/json", headers=headers)


class Hostile:
    """A misbehaving server: `token` answers POST /auth/token, `api` every /v2.1 path.
    Counts what it was asked."""

    def __init__(self, *, token: Handler | None = None, api: Handler | None = None) -> None:
        self._token = token
        self._api = api
        self.token_requests = 0
        self.api_requests = 0
        self.authorizations: list[str | None] = []

    async def token(self, request: web.Request) -> web.StreamResponse:
        self.token_requests += 1
        if self._token is None:
            return _json(GOOD_TOKEN)
        return await self._token(request)

    async def api(self, request: web.Request) -> web.StreamResponse:
        self.api_requests += 1
        self.authorizations.append(request.headers.get("Authorization"))
        assert self._api is not None, "this mode sends no API request"
        return await self._api(request)

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/auth/token", self.token),
                web.route("*", "/v2.1/{tail:.*}", self.api)]


def hostile_client(server: Hostile, **kwargs: Any
                   ) -> Any:  # an async context manager of an OxlinClient
    kwargs.setdefault("retry", FAST)
    return client_of(server.routes(), client_secret=CS, **kwargs)


async def ends(call: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(call, BOUND)


def _reachable(exc: BaseException) -> Iterator[object]:
    """The exception, its chain, and everything its attributes hold (recursively)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, BaseException):
            todo += [obj.__context__, obj.__cause__, *obj.args, *vars(obj).values()]
        elif isinstance(obj, dict):
            todo += [*obj.keys(), *obj.values()]
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo += list(obj)


def assert_no_secret(exc: BaseException) -> None:
    texts = ["".join(traceback.format_exception(exc))]
    for obj in _reachable(exc):
        if isinstance(obj, bytes):
            texts.append(obj.decode("utf-8", "replace"))
        texts += [str(obj), repr(obj)]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, (secret, text[:300])


async def fails(call: Awaitable[Any], kind: type[BaseException]) -> Any:
    """The error `call` ends in: of type `kind`, and keeping no secret."""
    with pytest.raises(kind) as caught:
        await ends(call)
    assert_no_secret(caught.value)
    return caught.value


@pytest.fixture
async def alice_of() -> AsyncIterator[Callable[..., Awaitable[ox.UserClient]]]:
    """Open a client of a `Hostile` server and return the view of a user on it."""
    stack: list[Any] = []

    async def open_(server: Hostile, **kwargs: Any) -> ox.UserClient:
        manager = hostile_client(server, **kwargs)
        client = await manager.__aenter__()
        stack.append(manager)
        return client.as_user("alice@example.com", "pw")

    yield open_
    for manager in reversed(stack):
        await manager.__aexit__(None, None, None)


# -- 1. a status the operation does not document: redirects included, never followed ----
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_typed_error_naming_location(status: int, alice_of: Any) -> None:
    elsewhere = "https://elsewhere.example/v2.1/x"

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": elsewhere})

    server = Hostile(api=redirect)
    alice = await alice_of(server)
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: alice.accounts.list().collect(), lambda: alice.accounts.get("1"),
        lambda: alice.accounts.archive("1"), lambda: alice.categories.list(),
        lambda: alice.users.me(), lambda: alice.connections.delete("1"),
        lambda: alice.transactions.list().first(),
    ]
    for call in calls:
        error = await fails(call(), ox.UnexpectedStatusError)
        assert error.status == status and error.location == elsewhere
        assert elsewhere in str(error) and "not followed" in str(error)
        assert isinstance(error, ox.APIError)
    # each call asked once: not followed, not retried
    assert server.api_requests == len(calls)


@pytest.mark.parametrize(("method", "status"), [("GET", 204), ("GET", 201), ("DELETE", 200),
                                                ("PATCH", 202)])
async def test_an_undocumented_success_status_is_a_typed_error(method: str, status: int,
                                                                alice_of: Any) -> None:
    async def answer(request: web.Request) -> web.Response:
        return _json(ACCOUNT, status)

    alice = await alice_of(Hostile(api=answer))
    call = {"GET": lambda: alice.accounts.get("1"),
            "DELETE": lambda: alice.connections.delete("1"),
            "PATCH": lambda: alice.accounts.archive("1")}[method]
    error = await fails(call(), ox.UnexpectedStatusError)
    assert error.status == status and error.location is None
    assert "does not document" in str(error)


# -- 2. a token endpoint slower than the lifetimes it grants -----------------------------
async def test_tokens_that_expire_before_they_arrive_end_in_a_typed_error(alice_of: Any
                                                                          ) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.25)
        return _json({**GOOD_TOKEN, "expires_in": 0.1})

    server = Hostile(token=slow, api=lambda r: asyncio.sleep(0, _json(USER)))
    alice = await alice_of(server)
    error = await fails(alice.users.me(), ox.TokenRenewalError)
    assert "expired before they arrived" in str(error) and "server fault" in str(error)
    assert server.token_requests == 3  # the attempt cap, not forever
    assert server.api_requests == 0


async def test_a_token_renewal_has_a_deadline(alice_of: Any) -> None:
    async def stuck(request: web.Request) -> web.Response:
        await asyncio.sleep(BOUND)
        return _json(GOOD_TOKEN)

    alice = await alice_of(Hostile(token=stuck), token_deadline=0.3)
    error = await fails(alice.users.me(), ox.TokenRenewalError)
    assert "0.3s deadline" in str(error)


def test_the_cli_ends_when_tokens_expire_before_they_arrive(tmp_path: Any,
                                                             monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["export", "--sandbox", "--sandbox-users", "2", "--sandbox-transactions",
                   "3", "--sandbox-token-lifetime", "1", "--sandbox-latency-ms", "1100",
                   "--out", "tx.jsonl", "--quiet"])
    assert rc == 1
    report = json.loads((tmp_path / "tx.jsonl.report.json").read_text(encoding="utf-8"))
    assert {r["error_type"] for r in report["results"]} == {"TokenRenewalError"}
    assert all("expired before they arrived" in r["error"] for r in report["results"])


async def test_tokens_stale_before_they_can_be_sent_end_in_a_typed_error() -> None:
    # Each token is fresh when it arrives and stale once the call holds a slot (a clock
    # that moves a second per reading, tokens that last 1.5): the call gives up.
    ticks = iter(range(10**6))
    renewals: list[int] = []

    async def renew(previous: ox.Token | None, call: Any) -> ox.Token:
        renewals.append(1)
        return ox.Token(access_token=AT, expires_at=next(ticks) + 1.5, lifetime=1.5)

    server = Hostile(api=lambda r: asyncio.sleep(0, _json(USER)))
    manager = TokenManager(renew, clock=lambda: next(ticks))
    async with hostile_client(server) as client:
        options = RequestOptions(method="GET", url=client.environment.api_url / "users" / "me",
                                 auth=BearerAuth(manager))
        error = await fails(client.transport.request(as_nothing, options),
                            ox.TokenRenewalError)
    assert "stale before the request could be sent" in str(error)
    assert str(error) == ("cannot obtain a usable token: 4 tokens in a row were stale "
                          "before the request could be sent "
                          "(the token endpoint grants lifetimes shorter than it takes to "
                          "use them)")
    assert len(renewals) == 4 and server.api_requests == 0


# -- 3. a server that ignores `page` --------------------------------------------------------
def _page(request: web.Request, first_id: int = 1) -> web.Response:
    limit = int(request.query["limit"])
    return _json([{**TRANSACTION, "id": str(first_id + i)} for i in range(limit)])


@pytest.mark.parametrize("prefetch", [1, 8])
async def test_a_server_ignoring_page_stops_the_walk(prefetch: int, alice_of: Any) -> None:
    async def same_page(request: web.Request) -> web.Response:
        return _page(request)

    server = Hostile(api=same_page)
    alice = await alice_of(server)
    got: list[str] = []

    async def walk() -> None:
        async for item in alice.transactions.list(page_size=50, prefetch=prefetch):
            got.append(item.id)

    error = await fails(walk(), ox.PaginationError)
    assert "ignore `page`" in str(error)
    assert len(got) == len(set(got)) == 50  # nothing twice
    # a bounded number of pages: the stalled ones, plus those already in flight
    assert server.api_requests <= 1 + (prefetch + 2) + prefetch


async def test_max_pages_stops_an_endless_list(alice_of: Any) -> None:
    async def endless(request: web.Request) -> web.Response:
        # always new items: only max_pages can stop this one
        return _page(request, first_id=1000 * int(request.query["page"]))

    server = Hostile(api=endless)
    alice = await alice_of(server)
    error = await fails(alice.transactions.list(page_size=10, prefetch=1, max_pages=5)
                        .collect(), ox.PaginationError)
    assert "max_pages=5" in str(error) and error.page == 5
    assert server.api_requests == 5
    with pytest.raises(ox.ArgumentError, match="max_pages"):
        alice.transactions.list(max_pages=0)


# -- 4. deeply nested JSON -------------------------------------------------------------------
DEEP = b"[" * 200_000 + b"]" * 200_000


@pytest.mark.parametrize(("status", "kind"), [(400, ox.BadRequestError),
                                              (500, ox.InternalServerError),
                                              (404, ox.NotFoundError), (200, ox.DecodeError)])
async def test_a_deeply_nested_body_is_a_typed_error(status: int, kind: type[Exception],
                                                     alice_of: Any) -> None:
    async def deep(request: web.Request) -> web.Response:
        return web.Response(body=DEEP, status=status, content_type="application/json")

    alice = await alice_of(Hostile(api=deep), retry=ox.RetryPolicy.disabled())
    for call in (alice.accounts.get("1"), alice.accounts.list().collect()):
        error = await fails(call, kind)
        if isinstance(error, ox.APIError):
            assert error.code is None and error.status == status


async def test_a_deeply_nested_token_answer_is_a_decode_error(alice_of: Any) -> None:
    async def deep(request: web.Request) -> web.Response:
        return web.Response(body=DEEP, content_type="application/json")

    alice = await alice_of(Hostile(token=deep), retry=ox.RetryPolicy.disabled())
    await fails(alice.users.me(), ox.DecodeError)


# -- 5. and 9. token answers, validated field by field ---------------------------------------
@pytest.mark.parametrize(("change", "field"), [
    ({"access_token": "at\r\nX-Injected: 1"}, "access_token"),
    ({"access_token": "at with spaces"}, "access_token"),
    ({"access_token": "jeton-é"}, "access_token"),
    ({"access_token": ""}, "access_token"),
    ({"access_token": 12345}, "access_token"),
    ({"expires_in": True}, "expires_in"),
    ({"expires_in": 0}, "expires_in"),
    ({"expires_in": -5}, "expires_in"),
    ({"expires_in": "3600"}, "expires_in"),
    ({"expires_in": None}, "expires_in"),
    ({"token_type": "mac"}, "token_type"),
    ({"token_type": None}, "token_type"),
    ({"refresh_token": 7}, "refresh_token"),
    ({"refresh_token": "rt\nx"}, "refresh_token"),
    ({"scope": ["a"]}, "scope"),
])
async def test_a_bad_token_answer_names_its_field(change: dict[str, Any], field: str,
                                                  alice_of: Any) -> None:
    async def answer(request: web.Request) -> web.Response:
        return _json({**GOOD_TOKEN, **change})

    server = Hostile(token=answer)
    alice = await alice_of(server, retry=ox.RetryPolicy.disabled())
    error = await fails(alice.users.me(), ox.DecodeError)
    assert field in str(error) and error.excerpt is None
    assert server.api_requests == 0  # nothing sent with a token we could not check
    if "access_token" not in change and "expires_in" not in change:
        assert "lacks" not in str(error)


@pytest.mark.parametrize("change", [{"expires_in": 3600.5}, {"expires_in": 10**20},
                                    {"expires_in": 0.5}, {"token_type": "bearer"},
                                    {"token_type": "BEARER"}, {"refresh_token": None}])
async def test_a_good_token_answer_is_used(change: dict[str, Any], alice_of: Any) -> None:
    async def answer(request: web.Request) -> web.Response:
        return _json({**GOOD_TOKEN, **change})

    async def me(request: web.Request) -> web.Response:
        return _json(USER)

    server = Hostile(token=answer, api=me)
    alice = await alice_of(server)
    assert (await ends(alice.users.me())).id == USER["id"]
    assert server.authorizations == [f"Bearer {AT}"]


async def test_a_caller_token_with_a_line_break_is_refused_before_sending() -> None:
    server = Hostile()
    async with hostile_client(server) as client:
        for bad in ("at\r\nX: 1", "", "jeton é"):
            with pytest.raises(ox.ArgumentError, match="access_token"):
                client.as_user_token(bad)
        with pytest.raises(ox.ArgumentError, match="refresh_token"):
            client.as_user_token("at", "rt\nx")
    assert server.token_requests == 0


# -- 6. the size of a body ------------------------------------------------------------------
@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_above_the_limit_is_a_typed_error(declared: bool, alice_of: Any) -> None:
    size = 2 * 2**20

    async def huge(request: web.Request) -> web.StreamResponse:
        if declared:
            return web.Response(body=b"[" + b" " * size + b"]",
                                content_type="application/json")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        try:
            for _ in range(size // 2**16 + 2):
                await response.write(b" " * 2**16)
        except (ConnectionError, RuntimeError):
            pass  # the client hung up, as it should
        return response

    server = Hostile(api=huge)
    alice = await alice_of(server, max_body_size=2**20)
    error = await fails(alice.categories.list(), ox.ResponseTooLargeError)
    assert error.limit == 2**20 and "max_body_size" in str(error)
    assert isinstance(error, ox.DecodeError)
    assert server.api_requests == 1  # the same answer would come again: not retried


async def test_a_body_within_the_limit_is_read(alice_of: Any) -> None:
    async def categories(request: web.Request) -> web.Response:
        return _json([CATEGORY] * 2000)

    alice = await alice_of(Hostile(api=categories), max_body_size=2**20)
    assert len(await ends(alice.categories.list())) == 2000
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ox.ArgumentError, match="max_body_size"):
            ox.OxlinClient("id", "secret", max_body_size=bad)
    for bad_deadline in (0, -1.0, True, math.inf, math.nan, "60"):
        with pytest.raises(ox.ArgumentError, match="token_deadline"):
            ox.OxlinClient("id", "secret", token_deadline=bad_deadline)
    assert ox.OxlinClient("id", "secret").transport.max_body_size == 16 * 2**20


# -- 7., 8. and 10. a malformed token answer: no secret kept, retried at one level -----------
BROKEN_TOKEN_ANSWERS = [
    ('{"access_token": "' + AT + '", "refresh_token": "' + RT + '", "expires_in": ').encode(),
    json.dumps({**GOOD_TOKEN, "expires_in": "soon"}).encode(),
    json.dumps({**GOOD_TOKEN, "token_type": "mac"}).encode(),
    json.dumps([GOOD_TOKEN]).encode(),
    b"<html>" + AT.encode() + b"</html>",
    ('{"access_token": "' + AT + '\xff').encode("latin-1"),
]


@pytest.mark.parametrize("body", BROKEN_TOKEN_ANSWERS)
async def test_a_malformed_token_answer_keeps_no_secret(body: bytes, alice_of: Any) -> None:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    server = Hostile(token=answer)
    alice = await alice_of(server, retry=ox.RetryPolicy(max_retries=3, initial_backoff=0.001))
    error = await fails(alice.users.me(), ox.DecodeError)
    assert error.excerpt is None and error.__context__ is None and error.__cause__ is None
    assert "/auth/token" in str(error)
    assert server.token_requests == 4  # one level of retries: the token request's own
    assert server.api_requests == 0


async def test_an_api_body_is_excerpted_with_every_secret_masked(alice_of: Any) -> None:
    body = ('{"Access_Token": "' + AT + '", "password": "x\\"' + CS + '", "token": ["' + RT
            + '"], "id": 5, ').encode()  # cut off: invalid JSON, excerpted

    async def me(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    alice = await alice_of(Hostile(api=me), retry=ox.RetryPolicy.disabled())
    error = await fails(alice.users.me(), ox.DecodeError)
    assert error.excerpt is not None and '"Access_Token": "***"' in error.excerpt
    assert '"token": ***' in error.excerpt


async def test_a_token_error_echoing_a_secret_does_not_repeat_it() -> None:
    async def refuse(request: web.Request) -> web.Response:
        sent = await request.post()
        echoed = f"refresh token {sent.get('refresh_token')} unknown; password={CS}"
        return _json({"error": "invalid_grant", "error_description": echoed}, 400)

    server = Hostile(token=refuse)
    async with hostile_client(server) as client:
        stale = client.as_user_token("at-expired", RT, expires_in=0)
        error = await fails(stale.users.me(), ox.InvalidGrantError)
    assert error.description is not None and "refresh token *** unknown" in error.description


# -- 11. Retry-After as an HTTP date ---------------------------------------------------------
async def test_a_retry_after_date_far_ahead_raises_at_once(alice_of: Any) -> None:
    async def maintenance(request: web.Request) -> web.Response:
        return _json({"error": "SERVICE_UNAVAILABLE"}, 503,
                     **{"Retry-After": "Thu, 01 Jan 2099 00:00:00 GMT"})

    server = Hostile(api=maintenance)
    alice = await alice_of(server)
    error = await fails(alice.users.me(), ox.ServiceUnavailableError)
    assert error.retry_after is not None and error.retry_after > 365 * 86400
    assert server.api_requests == 1  # above max_retry_after: not waited for


async def test_a_retry_after_date_near_ahead_is_waited_for(alice_of: Any) -> None:
    answers: list[float] = []

    async def limited(request: web.Request) -> web.Response:
        answers.append(time.time())
        if len(answers) == 1:
            when = email.utils.format_datetime(
                dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=3), usegmt=True)
            return _json({"error": "TOO_MANY_REQUESTS"}, 429, **{"Retry-After": when})
        return _json(USER)

    alice = await alice_of(Hostile(api=limited))
    assert (await ends(alice.users.me())).id == USER["id"]
    assert len(answers) == 2 and answers[1] - answers[0] >= 1.5  # the date was read


# -- 12. POST /users: the Location --------------------------------------------------------
@pytest.mark.parametrize(("location", "user_id"), [
    ("/v2.1/users/12", "12"), ("/v2.1/users/12/", "12"), ("/api/v2.1/users/77", "77"),
    ("https://elsewhere.example/v2.1/users/5", None),
    ("//elsewhere.example/v2.1/users/5", None),
    ("/v2.1/users/%D9%A1%D9%A2", None),  # Arabic-Indic digits
    ("/v2.1/accounts/12", None), ("/v2.1/users/12abc", None), ("", None),
])
async def test_the_created_user_id_comes_only_from_our_own_host(location: str,
                                                                user_id: str | None) -> None:
    async def created(request: web.Request) -> web.Response:
        return web.Response(status=201, headers={"Location": location} if location else None)

    server = Hostile(api=created)
    async with hostile_client(server) as client:
        if user_id is not None:
            assert await ends(client.users.create("a@example.com", "pw")) == user_id
        else:
            error = await fails(client.users.create("a@example.com", "pw"), ox.DecodeError)
            assert "Location" in str(error)
        origin = str(client.environment.api_url.origin())
        if user_id == "12":  # an absolute one on our host is fine too
            location = origin + location
            assert await ends(client.users.create("b@example.com", "pw")) == "12"


# -- 13. filters the API cannot take: refused before any request -------------------------
@pytest.mark.parametrize(("name", "value"), [
    ("end_date", dt.date(9999, 12, 31)), ("start_date", dt.date(1, 1, 1)),
    ("since", 10**30), ("end_date", -10**30),
    ("start_date", dt.datetime(9999, 12, 31, 23, tzinfo=dt.timezone.utc)),
    ("min_amount", "1e999999"), ("max_amount", Decimal("-1e999999")),
    ("amount", Decimal("1e-999999")), ("amount", 10**13), ("min_amount", "0.0000001"),
])
async def test_a_filter_the_api_cannot_take_is_an_argument_error(name: str, value: Any,
                                                                 alice_of: Any) -> None:
    server = Hostile(api=lambda r: asyncio.sleep(0, _json([])))
    alice = await alice_of(server)
    with pytest.raises(ox.ArgumentError) as caught:
        alice.transactions.list(**{name: value})
    assert caught.value.argument == name
    with pytest.raises(ox.ArgumentError):
        ox.TransactionFilter(**{name: value})
    assert server.token_requests == server.api_requests == 0


@pytest.mark.parametrize("option", [["--end-date", "9999-12-31"],
                                    ["--min-amount", "1e999999"], ["--amount", "1e-999999"]])
def test_the_cli_shares_the_filter_bounds(option: list[str], tmp_path: Any,
                                          monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as caught:  # argparse's usage error
        cli.main(["export", "--sandbox", "--out", "tx.jsonl", "--quiet", *option])
    assert caught.value.code == 2
    assert not (tmp_path / "tx.jsonl").exists()


async def test_filters_at_the_edges_the_api_takes_are_sent(alice_of: Any) -> None:
    seen: list[dict[str, str]] = []

    async def listing(request: web.Request) -> web.Response:
        seen.append(dict(request.query))
        return _json([])

    alice = await alice_of(Hostile(api=listing))
    await ends(alice.transactions.list(end_date=dt.date(9999, 12, 30),
                                       min_amount="-999999999999.99",
                                       max_amount=Decimal("0.000001")).collect())
    assert seen[0]["min_amount"] == "-999999999999.99" and seen[0]["max_amount"] == "0.000001"
    assert int(seen[0]["end_date"]) > 253_000_000_000
