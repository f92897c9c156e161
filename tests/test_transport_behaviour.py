"""The request path as statements of behaviour: which answers count as success, when a
401 is replayed, what a queued request does with a token that expired meanwhile, what
goes on the wire (headers, no redirects), what is logged, and what a `Response` shows.

Counts come from the emulator's counters or from a tiny server of the test's own.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
import yarl
from _helpers import ME, POST_USERS, TOKEN, client_of, closed_port, new_client, requests
from aiohttp import web

import oxlin_async as ox
from oxlin_async._transport import Response
from oxlin_async.testing import OxlinSandbox

CATEGORIES = "/v2.1/categories"
OFF = ox.RetryPolicy.disabled()


def token_route(grants: Counter[str]) -> web.RouteDef:
    async def token(request: web.Request) -> web.Response:
        form = await request.post()
        grants[str(form["grant_type"])] += 1
        n = sum(grants.values())
        return web.json_response({"access_token": f"access-{n}", "token_type": "Bearer",
                                  "expires_in": 3600, "scope": "users_create"})
    return web.post("/auth/token", token)


def answers(*replies: tuple[int, object], seen: list[dict[str, str]] | None = None,
            ) -> web.RouteDef:
    """GET /v2.1/categories answering `replies` in turn (the last one from then on)."""
    left = list(replies)

    async def handler(request: web.Request) -> web.Response:
        if seen is not None:
            seen.append(dict(request.headers))
        status, body = left.pop(0) if len(left) > 1 else left[0]
        return web.json_response(body, status=status)
    return web.get(CATEGORIES, handler)


# ---------------------------------------------------------------- success is 2xx only
async def test_a_300_answer_is_an_error_not_a_result() -> None:
    grants: Counter[str] = Counter()
    async with client_of([token_route(grants), answers((300, []))], retry=OFF) as client:
        with pytest.raises(ox.OxlinError):
            await client.categories.list()


async def test_a_redirect_is_not_followed() -> None:
    grants: Counter[str] = Counter()
    followed: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/v2.1/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.json_response([])

    async with client_of([token_route(grants), web.get(CATEGORIES, moved),
                          web.get("/v2.1/elsewhere", elsewhere)], retry=OFF) as client:
        with pytest.raises(ox.OxlinError):
            await client.categories.list()
    assert followed == []


async def test_a_wrong_shaped_list_is_a_decode_error_naming_the_answer() -> None:
    grants: Counter[str] = Counter()

    async def categories(request: web.Request) -> web.Response:
        return web.json_response([{"id": 5}], headers={"X-Request-ID": "r-42"})

    async with client_of([token_route(grants), web.get(CATEGORIES, categories)],
                         retry=OFF) as client:
        with pytest.raises(ox.DecodeError) as caught:
            await client.categories.list()
    error = caught.value
    assert error.status == 200 and error.request_id == "r-42"
    assert "Category" in error.message


@pytest.mark.parametrize(("status", "kind"), [
    (599, ox.ServerError),  # the last error status: an API error, by status
    (600, ox.UnexpectedStatusError),  # past every error status: not an answer we know
])
async def test_the_error_statuses_end_at_599(status: int, kind: type[Exception]) -> None:
    grants: Counter[str] = Counter()
    async with client_of([token_route(grants), answers((status, {}))], retry=OFF) as client:
        with pytest.raises(ox.APIError) as caught:
            await client.categories.list()
    assert type(caught.value) is kind
    assert caught.value.status == status


# ------------------------------------------------------------------------------ replay
async def test_a_401_without_an_error_code_is_replayed_once_with_a_new_token() -> None:
    grants: Counter[str] = Counter()
    seen: list[dict[str, str]] = []
    async with client_of([token_route(grants), answers((401, {}), (200, []), seen=seen)],
                         retry=OFF) as client:
        assert await client.categories.list() == []
    assert [h["Authorization"] for h in seen] == ["Bearer access-1", "Bearer access-2"]
    assert grants == {"client_credentials": 2}


async def test_a_replay_starts_the_retry_count_afresh() -> None:
    grants: Counter[str] = Counter()
    seen: list[dict[str, str]] = []
    policy = ox.RetryPolicy(max_retries=1, initial_backoff=0.001, max_backoff=0.001)
    async with client_of([token_route(grants), answers(
            (503, {}), (401, {"error": "invalid_token"}), (503, {}), (503, {}), seen=seen)],
            retry=policy) as client:
        with pytest.raises(ox.ServiceUnavailableError):
            await client.categories.list()
    # 503, retry: 401, replay: 503, retry: 503, give up.
    assert len(seen) == 4
    assert grants == {"client_credentials": 2}


async def test_invalid_client_from_the_api_is_not_replayed() -> None:
    grants: Counter[str] = Counter()
    seen: list[dict[str, str]] = []
    async with client_of([token_route(grants),
                          answers((401, {"error": "invalid_client"}), seen=seen)],
                         retry=OFF) as client:
        with pytest.raises(ox.AuthenticationError):
            await client.categories.list()
    assert len(seen) == 1 and grants == {"client_credentials": 1}


# ------------------------------------------------------- a token that expired in the queue
@pytest.fixture
async def short_lived() -> AsyncIterator[OxlinSandbox]:
    """Access tokens that live two seconds (renewal margin 0.2 s)."""
    async with OxlinSandbox(users=2, seed=11, token_lifetime=2) as box:
        yield box


async def test_a_token_that_expires_while_queued_for_a_slot_is_renewed_before_sending(
        short_lived: OxlinSandbox) -> None:
    sandbox = short_lived
    alice, bob = sandbox.users[0], sandbox.users[1]
    async with new_client(sandbox, max_concurrency=1) as client:
        as_alice = client.as_user(alice.email, alice.password)
        as_bob = client.as_user(bob.email, bob.password)
        await as_alice.users.me()  # alice's token: expires at 2 s
        await asyncio.sleep(1)
        await as_bob.users.me()  # bob's: at 3 s
        sandbox.set_faults(paths=("/api/",), latency=1.5)
        before = requests(sandbox, ME)
        blocker = asyncio.create_task(as_bob.users.me())  # holds the only slot until 2.5 s
        while requests(sandbox, ME) == before:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        # Alice's token is fresh when taken, expired when the slot comes free.
        queued = asyncio.create_task(as_alice.users.me())
        await asyncio.gather(blocker, queued)
    assert requests(sandbox, ME) - before == 2  # no 401 met, nothing replayed
    assert sandbox.state.counters.grants == {"password": 2, "refresh_token": 1}


# ------------------------------------------------------------------------- on the wire
async def test_an_owned_session_sends_the_sdk_headers() -> None:
    grants: Counter[str] = Counter()
    seen: list[dict[str, str]] = []
    async with client_of([token_route(grants), answers((200, []), seen=seen)]) as client:
        await client.categories.list()
    assert seen[0]["User-Agent"] == f"oxlin-async/{ox.__version__}"
    assert seen[0]["Accept"] == "application/json"


def test_max_concurrency_below_one_is_refused_and_one_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"^max_concurrency must be at least 1$"):
        ox.OxlinClient("id", "secret", max_concurrency=0)
    assert ox.OxlinClient("id", "secret", max_concurrency=1).transport.max_concurrency == 1


async def test_an_unlimited_borrowed_pool_leaves_max_concurrency_as_asked() -> None:
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        client = ox.OxlinClient("id", "secret", session=http, max_concurrency=5)
        assert client.transport.max_concurrency == 5
        await client.close()


async def test_a_closed_client_refuses_new_requests(sandbox: OxlinSandbox) -> None:
    client = new_client(sandbox)
    await client.categories.list()
    await client.close()
    with pytest.raises(RuntimeError, match=r"^this client is closed$"):
        await client.categories.list()
    assert requests(sandbox, TOKEN) == 1


def test_max_body_size_of_one_byte_is_allowed_and_below_it_is_refused() -> None:
    assert ox.OxlinClient("id", "secret", max_body_size=1).transport.max_body_size == 1
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ox.ArgumentError) as caught:
            ox.OxlinClient("id", "secret", max_body_size=bad)
        assert caught.value.argument == "max_body_size"
        assert str(caught.value) == ("invalid argument 'max_body_size': must be an int of "
                                     f"at least 1 (bytes), got {bad!r}")


# ------------------------------------------------------------ attempts that get no answer
async def test_a_post_that_timed_out_is_not_sent_again(sandbox: OxlinSandbox) -> None:
    # It may have reached the server: creating the user twice is worse than an error.
    async with new_client(sandbox, timeout=0.3) as client:
        await client.categories.list()
        sandbox.set_faults(paths=("/api/",), latency=1.0)
        with pytest.raises(ox.RequestTimeoutError) as caught:
            await client.users.create("slow.post@example.com", "pw-slow-123")
    assert str(caught.value).startswith("the request timed out (POST ")
    assert requests(sandbox, POST_USERS) == 1
    # The emulator's handler sleeps out its latency, then finds the connection gone.
    await asyncio.sleep(1.0)
    assert requests(sandbox, POST_USERS) == 1


async def test_a_dropped_connection_and_a_refused_one_say_which(sandbox: OxlinSandbox) -> None:
    async with new_client(sandbox, retry=OFF) as client:
        await client.categories.list()
        sandbox.set_faults(paths=("/api/",), rate_drop=1.0)
        with pytest.raises(ox.TransportError) as dropped:
            await client.categories.list()
    said = re.match(r"connection failed: (\w+) \(GET ", str(dropped.value))
    assert said is not None  # and it names aiohttp's error, say ClientPayloadError
    assert issubclass(getattr(aiohttp, said.group(1)), aiohttp.ClientError)
    base = f"http://127.0.0.1:{closed_port()}"
    env = ox.Environment(auth_url=f"{base}/auth", api_url=f"{base}/api/v2.1",
                         embed_url=f"{base}/embed/v2.1")
    async with ox.OxlinClient("id", "secret", environment=env, retry=OFF) as client:
        with pytest.raises(ox.TransportError) as refused:
            await client.categories.list()
    assert str(refused.value).startswith("cannot connect: ")


async def test_a_request_aiohttp_cannot_send_is_a_transport_error_never_retried(
        sandbox: OxlinSandbox) -> None:
    # A line break in a header value (here the caller's User-Agent) would split the header:
    # aiohttp refuses to send it. The error names the request, not the bad value.
    async with new_client(sandbox, user_agent="app/1\r\nX-Evil: 1") as client:
        with pytest.raises(ox.TransportError) as caught:
            await client.categories.list()
    error = caught.value
    assert type(error) is ox.TransportError
    assert (error.method, yarl.URL(error.url).path) == ("POST", "/auth/token")
    assert str(error) == f"the request could not be sent: ValueError (POST {error.url})"
    assert "Evil" not in str(error)
    assert requests(sandbox, TOKEN) == 0


# ------------------------------------------------------------------------------ logging
async def test_each_retry_and_replay_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    grants: Counter[str] = Counter()
    policy = ox.RetryPolicy(initial_backoff=0.001, max_backoff=0.001)
    caplog.set_level(logging.DEBUG, logger="oxlin_async")
    async with client_of([token_route(grants), answers(
            (503, {}), (401, {"error": "invalid_token"}), (200, []))], retry=policy) as client:
        await client.categories.list()
    mine = [r for r in caplog.records if r.name == "oxlin_async"]
    retry = [r for r in mine if r.levelno == logging.INFO]
    assert len(retry) == 1
    assert re.fullmatch(r"GET /v2\.1/categories failed \(ServiceUnavailableError\); "
                        r"retry 1 in 0\.\d\ds", retry[0].getMessage())
    replay = [r for r in mine if r.levelno == logging.DEBUG and "replay" in r.getMessage()]
    assert [r.getMessage() for r in replay] == [
        "GET /v2.1/categories: 401, renewing the token and replaying"]


# ----------------------------------------------------------------------------- Response
def test_a_response_repr_shows_neither_its_body_nor_its_decoded_body() -> None:
    body = b'{"access_token": "s3cret-token", "expires_in": 60}'
    response = Response(200, {"X-Request-ID": "r-1"}, body, "POST",
                        yarl.URL("https://auth.example/token"))
    assert response.json()["access_token"] == "s3cret-token"
    text = repr(response)
    assert "s3cret" not in text and "access_token" not in text
    assert "200" in text and "POST" in text


def test_an_undecodable_body_names_the_request_and_keeps_status_and_request_id() -> None:
    response = Response(502, {"X-Request-ID": "r-9"}, b'{"half": ', "GET",
                        yarl.URL("https://api.example/v2.1/accounts?limit=5"))
    with pytest.raises(ox.DecodeError) as caught:
        response.json()
    error = caught.value
    assert error.status == 502 and error.request_id == "r-9"
    assert error.message.startswith("GET /v2.1/accounts: the body is not valid JSON: ")
    assert "invalid JSON" not in error.message
    assert "line 1 column" in error.message  # the parser's own word on what is wrong
