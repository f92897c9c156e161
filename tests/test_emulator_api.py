"""The emulator's API host over real HTTP: the quickstart flow, users, scopes, 404s,
PATCH and deletions (docs/oxlin-api §2, §5, §6, §10, §14).

A plain `aiohttp.ClientSession` drives the server (the `api` fixture), and answers are
compared with the ground truth (`sandbox.state`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from _api import (
    CATEGORY_IDS,
    QUICKSTART_SCOPES,
    Api,
    all_txs,
    assert_error,
    ids,
    money,
)
from _helpers import user_data

from oxlin_async.testing import OxlinSandbox, load_testbank


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
        data = user_data(sandbox, index)
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
    data = user_data(sandbox, 0)
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
    assert len(user_data(sandbox, 0).connections) >= 1


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
    assert len(user_data(sandbox, 0).connections) >= 1


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
    assert {t.category_id for t in all_txs(user_data(sandbox, 0))} <= set(by_id)
    assert_error(await api.get("/categories", "at_nope"), 401, "invalid_token")


# ------------------------------------------------------------------------------- 404s
@pytest.mark.parametrize("kind", ["connections", "accounts", "transactions"])
async def test_unknown_foreign_and_malformed_ids_are_resource_unknown(
        sandbox: OxlinSandbox, api: Api, kind: str) -> None:
    other = user_data(sandbox, 1)
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
    data = user_data(sandbox, 0)
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
    data = user_data(sandbox, 0)
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
    index = max(range(len(sandbox.users)), key=lambda i: len(user_data(sandbox, i).connections))
    data = user_data(sandbox, index)
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
    before = user_data(sandbox, 0)
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
