"""The emulator's own hardening (issue 9): secrets compared in constant time, links built
from its configured base URL and never from ``Host``, the widget's bank-login lockout
kept on the server, and a POST /users ``Location`` that resolves on the emulator."""

from __future__ import annotations

import base64
import hmac
import secrets
from typing import Any

import aiohttp
import pytest
from _api import Api
from _helpers import parse_page
from aiohttp.test_utils import TestServer
from yarl import URL

import oxlin_async as ox
from oxlin_async.testing import OxlinSandbox
from oxlin_async.testing._faults import Faults
from oxlin_async.testing._records import Client
from oxlin_async.testing._server import build_app
from oxlin_async.testing._state import EmulatorState

REDIRECT = "https://app.example/done"


@pytest.fixture
def compared(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    """Every pair of values the emulator compares in constant time."""
    seen: list[tuple[bytes, bytes]] = []

    def spy(a: Any, b: Any) -> bool:
        seen.append((a, b))
        return hmac.compare_digest(a, b)

    monkeypatch.setattr(secrets, "compare_digest", spy)
    return seen


async def test_the_token_endpoint_compares_secrets_in_constant_time(
        sandbox: OxlinSandbox, api: Api, compared: list[tuple[bytes, bytes]]) -> None:
    secret = sandbox.client_secret.encode()
    await api.token({"grant_type": "client_credentials"}, basic=True)
    assert (secret, secret) in compared
    compared.clear()
    alice = sandbox.users[0]
    await api.login(alice.email, alice.password)  # client secret in the form body
    assert (secret, secret) in compared
    assert (alice.password.encode(), alice.password.encode()) in compared

    # wrong ones, of another length, or not ASCII: refused, never a 500
    for wrong in ("x", sandbox.client_secret + "0", "sécret"):
        raw = base64.b64encode(f"{sandbox.client_id}:{wrong}".encode()).decode()
        reply = await api.request("POST", "/token", base=sandbox.auth_url,
                                  data={"grant_type": "client_credentials"},
                                  headers={"Authorization": f"Basic {raw}"})
        assert reply.status == 401 and reply.json()["error"] == "invalid_client"
    for wrong in ("nope", "mot de passe é"):
        reply = await api.request("POST", "/token", base=sandbox.auth_url, data={
            "grant_type": "password", "username": alice.email, "password": wrong,
            **api.credentials})
        assert reply.status == 400 and reply.json()["error"] == "invalid_grant"


async def _session(api: Api, sandbox: OxlinSandbox, **headers: str) -> dict[str, Any]:
    token = await api.user_token()
    reply = await api.request("POST", "/widget/widget_session", base=sandbox.embed_url,
                              data={**api.credentials, "access_token": token},
                              headers=headers)
    assert reply.status == 200, reply.raw
    return reply.json()  # type: ignore[no-any-return]


async def test_widget_links_come_from_the_base_url_never_from_host(
        sandbox: OxlinSandbox, api: Api, http: aiohttp.ClientSession) -> None:
    page = f"{sandbox.base_url}/embed/widget/add_connection"
    for host in ("evil.example", "evil.example:666", sandbox.base_url.split("//")[1]):
        session = await _session(api, sandbox, Host=host)
        link = URL(session["_links"]["add_connection"])
        assert str(link.with_query(None)) == page
        assert "evil" not in str(link)
        # the form's action too
        url = link.update_query(redirect_uri=REDIRECT, bank="linxo_test_bank")
        async with http.get(url, headers={"Host": "evil.example"}) as response:
            (form,) = parse_page(await response.text()).forms
        assert form.action == page


async def _submit(http: aiohttp.ClientSession, form: Any, **fields: str
                  ) -> aiohttp.ClientResponse:
    body = {**form.fields, "login": "dev", "action": "connect", **fields}
    async with http.post(form.action, data=body, allow_redirects=False) as response:
        await response.read()
        return response


async def test_the_bank_login_lockout_is_kept_on_the_server(
        sandbox: OxlinSandbox, api: Api, http: aiohttp.ClientSession,
        compared: list[tuple[bytes, bytes]]) -> None:
    session = await _session(api, sandbox)
    url = URL(session["_links"]["add_connection"]).update_query(
        redirect_uri=REDIRECT, bank="linxo_test_bank")
    async with http.get(url) as response:
        (form,) = parse_page(await response.text()).forms
    # a client that resets the hidden counter it was given changes nothing
    for left in (2, 1):
        response = await _submit(http, form, password="nope", attempt="0")
        assert response.status == 200
        assert f"({left} attempt(s) left)" in await response.text()
    assert any(pair == (b"nope", b"nope") or b"nope" in pair for pair in compared)
    response = await _submit(http, form, password="nope", attempt="-50")
    assert response.status == 302
    assert URL(response.headers["Location"]).query["error"] == "auth_failed"
    # locked out: even the right password does not connect now
    response = await _submit(http, form, password="dev", attempt="0")
    assert response.status == 302
    assert URL(response.headers["Location"]).query["error"] == "auth_failed"
    assert sandbox.state.widget_sessions[session["session_id"]].failed_logins == 3

    # another session starts afresh; a success clears the count
    other = await _session(api, sandbox)
    url = URL(other["_links"]["add_connection"]).update_query(
        redirect_uri=REDIRECT, bank="linxo_test_bank")
    async with http.get(url) as response:
        (form,) = parse_page(await response.text()).forms
    assert (await _submit(http, form, password="nope")).status == 200
    done = await _submit(http, form, password="dev")
    assert done.status == 302 and URL(done.headers["Location"]).query["status"] == "success"
    assert sandbox.state.widget_sessions[other["session_id"]].failed_logins == 0


async def test_the_created_user_location_resolves_on_the_emulator(
        sandbox: OxlinSandbox, api: Api, client: ox.OxlinClient,
        http: aiohttp.ClientSession) -> None:
    token = await api.client_token("users_create")
    created = await api.request("POST", "/users", token,
                                json_body={"email": "loc@example.com", "password": "pw-123"})
    assert created.status == 201
    location = created.headers["Location"]
    assert location.startswith("/v2.1/users/")  # as the reference spells it
    user = await api.login("loc@example.com", "pw-123")
    async with http.get(URL(sandbox.base_url).join(URL(location)),
                        headers={"Authorization": f"Bearer {user['access_token']}"}) as got:
        assert got.status == 200
        assert (await got.json())["email"] == "loc@example.com"
    # the SDK reads the id from it
    user_id = await client.users.create("sdk@example.com", "pw-123")
    assert sandbox.state.users[int(user_id)].email == "sdk@example.com"


async def test_an_app_without_a_base_url_links_to_its_own_socket_not_host(
        http: aiohttp.ClientSession) -> None:
    # build_app run by hand (no sandbox to configure base_url): the listening address.
    state = EmulatorState()
    state.add_client(Client("cid", "csecret"))
    user = state.create_user("own@example.com", "pw-123")
    token = state.issue_token("cid", user.id, frozenset({"openid"}))
    server = TestServer(build_app(state, Faults()))
    await server.start_server()
    try:
        url = server.make_url("/embed/v2.1/widget/widget_session")
        async with http.post(url, data={"client_id": "cid", "client_secret": "csecret",
                                        "access_token": token.value},
                             headers={"Host": "evil.example"}) as response:
            assert response.status == 200
            link = URL((await response.json())["_links"]["add_connection"])
    finally:
        await server.close()
    assert link.origin() == url.origin()
    assert link.path == "/embed/widget/add_connection"
