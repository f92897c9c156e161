"""The emulator's aiohttp application: auth host, API host and embed host on one port.

Paths: ``/auth/token``; ``/api/v2.1/...``; ``/embed/v2.1/widget/...`` and the widget's
browser pages under ``/embed/widget/...``. Each host's base URL is what clients use.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
from aiohttp import web

from . import _queries as q
from ._faults import Faults, fault_middleware
from ._http import HTTPProblem, bad_parameter, json_error, json_response, not_found, read_body
from ._records import CATEGORIES, SCOPES, Client, Transaction
from ._state import EmulatorState, Token, UserData
from ._widget import widget_routes

log = logging.getLogger(__name__)

STATE_KEY = web.AppKey("state", EmulatorState)
FAULTS_KEY = web.AppKey("faults", Faults)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="oxlin"'}
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
_EMAIL_MAX = 254
_PASSWORD_MAX = 72


class OAuthProblem(HTTPProblem):
    def __init__(self, code: str, description: str, status: int = 400) -> None:
        super().__init__(status, code, description,
                         _BASIC_CHALLENGE if code == "invalid_client" else None)


# ---------------------------------------------------------------------------- auth host
def _client_from_request(state: EmulatorState, request: web.Request,
                         body: dict[str, Any]) -> Client:
    header = request.headers.get("Authorization", "")
    in_body = "client_secret" in body
    if header.lower().startswith("basic "):
        if in_body:
            raise OAuthProblem("invalid_request", "use one client authentication method, not both")
        try:
            decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
            client_id, _, secret = decoded.partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthProblem("invalid_client", "malformed Basic credentials", 401) from None
        if "client_id" in body and body["client_id"] != client_id:
            raise OAuthProblem("invalid_request", "client_id differs from the Basic credentials")
    elif "client_id" in body or in_body:
        client_id, secret = str(body.get("client_id", "")), str(body.get("client_secret", ""))
    else:
        raise OAuthProblem("invalid_client", "client authentication is missing", 401)
    client = state.clients.get(client_id)
    if client is None or not secrets.compare_digest(client.client_secret.encode(),
                                                    secret.encode()):
        raise OAuthProblem("invalid_client", "client authentication failed", 401)
    return client


def _requested_scopes(body: dict[str, Any], allowed: frozenset[str]) -> frozenset[str]:
    raw = body.get("scope")
    if raw is None:
        return allowed
    scopes = frozenset(str(raw).split())
    extra = scopes - allowed
    if extra:
        raise OAuthProblem("invalid_scope", f"scope not allowed: {' '.join(sorted(extra))}")
    return scopes


def _required(body: dict[str, Any], *names: str) -> list[str]:
    missing = [n for n in names if not body.get(n)]
    if missing:
        raise OAuthProblem("invalid_request", f"missing parameter: {', '.join(missing)}")
    return [str(body[n]) for n in names]


async def token_endpoint(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    faults = request.app[FAULTS_KEY]
    try:
        body = await read_body(request)
    except ValueError as exc:
        raise OAuthProblem("invalid_request", str(exc)) from None
    grant = body.get("grant_type")
    if not grant:
        raise OAuthProblem("invalid_request", "missing parameter: grant_type")
    client = _client_from_request(state, request, body)
    granted: frozenset[str] | None = None  # what a new refresh token carries
    if grant == "client_credentials":
        scopes = _requested_scopes(body, client.scopes)
        user_id = None
    elif grant == "password":
        username, password = _required(body, "username", "password")
        scopes = _requested_scopes(body, client.scopes)
        user = state.user_by_email(username)
        if user is None or not secrets.compare_digest(user.password.encode(),
                                                      password.encode()):
            raise OAuthProblem("invalid_grant", "wrong username or password")
        user_id = user.id
    elif grant == "refresh_token":
        (value,) = _required(body, "refresh_token")
        old = state.refresh_tokens.get(value)
        if old is None or old.client_id != client.client_id:
            raise OAuthProblem("invalid_grant", "unknown, used or foreign refresh token")
        scopes = _requested_scopes(body, old.scopes)
        del state.refresh_tokens[value]  # rotation: a refresh token is single-use
        user_id = old.user_id
        # RFC 6749 §6: a narrowed `scope` narrows the access token only; the new refresh
        # token keeps the scope of the one it replaces (the original grant).
        granted = old.scopes
    else:
        raise OAuthProblem("unsupported_grant_type", f"unsupported grant_type {grant!r}")
    lifetime = state.token_lifetime
    token = state.issue_token(client.client_id, user_id, scopes,
                              lifetime=faults.token_lifetime(lifetime))
    state.counters.grants[str(grant)] += 1
    answer: dict[str, Any] = {"access_token": token.value, "token_type": "Bearer",
                              "expires_in": lifetime, "scope": " ".join(sorted(scopes))}
    if user_id is not None:
        answer["refresh_token"] = state.issue_refresh_token(
            client.client_id, user_id, scopes if granted is None else granted).value
    return json_response(answer, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


# ----------------------------------------------------------------------------- API host
def _authorize(request: web.Request, scopes: tuple[str, ...], *, user: bool) -> Token:
    """The bearer token, checked for validity, kind (user or any) and scopes (any of)."""
    state = request.app[STATE_KEY]
    header = request.headers.get("Authorization", "")
    kind, _, value = header.partition(" ")
    token = state.valid_token(value.strip()) if kind.lower() == "bearer" else None
    if token is None:
        raise HTTPProblem(401, "invalid_token", "the access token is missing, unknown or expired",
                          _BEARER_CHALLENGE)
    if user and token.user_id is None:
        raise HTTPProblem(403, "insufficient_scope", "this endpoint needs a user token")
    if scopes and not token.scopes.intersection(scopes):
        raise HTTPProblem(403, "insufficient_scope",
                          f"needs one of the scopes: {', '.join(scopes)}")
    return token


def _user_data(request: web.Request, scopes: tuple[str, ...]) -> tuple[int, UserData]:
    token = _authorize(request, scopes, user=True)
    assert token.user_id is not None
    return token.user_id, request.app[STATE_KEY].data(token.user_id)


def _path_id(request: web.Request, name: str) -> int | None:
    raw = request.match_info[name]
    return int(raw) if raw.isdigit() and raw.isascii() else None


_READ_ACCOUNTS = ("accounts_read", "accounts_manage")
_READ_TRANSACTIONS = ("transactions_read", "accounts_read")


async def create_user(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    _authorize(request, ("users_create",), user=False)
    try:
        body = await read_body(request)
    except ValueError as exc:
        raise bad_parameter(str(exc)) from None
    extra = set(body) - {"email", "password"}
    if extra:
        raise bad_parameter(f"unknown fields: {', '.join(sorted(extra))}")
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not email:
        raise bad_parameter("email is required")
    if not isinstance(password, str) or not password:
        raise bad_parameter("password is required")
    local, at, domain = email.partition("@")
    if (not at or not local or "@" in domain or "." not in domain.strip(".")
            or any(c.isspace() for c in email) or len(email) > _EMAIL_MAX):
        raise bad_parameter("email is not a valid e-mail address")
    if len(password) > _PASSWORD_MAX:
        raise bad_parameter(f"password is longer than {_PASSWORD_MAX} characters")
    if state.user_by_email(email) is not None:
        raise HTTPProblem(409, "CONFLICT", "a user with this e-mail already exists")
    user = state.create_user(email, password)
    # The reference's spelling (docs/oxlin-api, openapi.yaml); the API lives under
    # /api/v2.1 here, so `build_app` also serves the user under it (REFERENCE_USER).
    return web.Response(status=201, headers={"Location": f"/v2.1/users/{user.id}"})


def _own_user(request: web.Request, scope: str) -> int:
    token = _authorize(request, (scope,), user=True)
    # Only GET /users/me names the caller without an id; DELETE /users/me is "another id".
    if "user_id" in request.match_info and _path_id(request, "user_id") != token.user_id:
        raise HTTPProblem(403, "insufficient_scope", "a user can only access itself")
    assert token.user_id is not None
    return token.user_id


async def get_user(request: web.Request) -> web.Response:
    user_id = _own_user(request, "profile")
    return json_response(request.app[STATE_KEY].users[user_id].to_json())


async def delete_user(request: web.Request) -> web.Response:
    user_id = _own_user(request, "profile_edit")
    request.app[STATE_KEY].delete_user(user_id)
    return web.Response(status=204)


async def list_connections(request: web.Request) -> web.Response:
    _, data = _user_data(request, _READ_ACCOUNTS)
    page = q.run_query(q.CONNECTIONS, data.connections.values(), request.query)
    return json_response([c.to_json() for c in page])


R = TypeVar("R")


def _owned(request: web.Request, records: Mapping[int, R], kind: str) -> R:
    """The record named by the path, if it is the user's; else 404 (malformed ids too)."""
    found = records.get(_path_id(request, f"{kind}_id") or -1)
    if found is None:
        raise not_found(kind, request.match_info[f"{kind}_id"])
    return found


async def get_connection(request: web.Request) -> web.Response:
    _, data = _user_data(request, _READ_ACCOUNTS)
    return json_response(_owned(request, data.connections, "connection").to_json())


async def delete_connection(request: web.Request) -> web.Response:
    user_id, data = _user_data(request, ("connections_manage",))
    connection = _owned(request, data.connections, "connection")
    request.app[STATE_KEY].delete_connection(user_id, connection.id)
    return web.Response(status=204)


async def list_accounts(request: web.Request) -> web.Response:
    _, data = _user_data(request, _READ_ACCOUNTS)
    page = q.run_query(q.ACCOUNTS, data.accounts.values(), request.query)
    return json_response([a.to_json() for a in page])


async def get_account(request: web.Request) -> web.Response:
    _, data = _user_data(request, _READ_ACCOUNTS)
    return json_response(_owned(request, data.accounts, "account").to_json())


async def update_account(request: web.Request) -> web.Response:
    _, data = _user_data(request, ("accounts_manage",))
    found = _owned(request, data.accounts, "account")
    try:
        body = await read_body(request)
    except ValueError as exc:
        raise bad_parameter(str(exc)) from None
    if set(body) != {"status"} or body["status"] not in ("CLOSED", "ACTIVE"):
        raise bad_parameter('the body must be {"status": "CLOSED"} or {"status": "ACTIVE"}')
    found.status = body["status"]
    return json_response(found.to_json())


async def list_transactions(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    user_id, data = _user_data(request, _READ_TRANSACTIONS)
    query = request.query
    extra = []
    if "account_type" in query:
        extra.append(q.account_type_filter(query["account_type"], data.accounts))
    if "account_id" in query:
        account_id = q._id(query["account_id"]) or -1
        lists = {account_id: data.transactions[account_id]} \
            if account_id in data.transactions else {}
    else:
        lists = data.transactions
    records = [tx for txs in lists.values() for tx in txs]  # a copy: inserts may follow
    # Transactions are only ever appended or dropped with their account, so the lists'
    # identities and lengths tell whether a cached answer is still right.
    key = (user_id, tuple(sorted((k, v) for k, v in query.items() if k not in ("page", "limit"))),
           tuple((a, id(txs), len(txs)) for a, txs in lists.items()),
           tuple((a.id, a.type) for a in data.accounts.values()) if extra else ())
    page = q.run_query(q.TRANSACTIONS, records, query, extra, cache=state.query_cache, key=key)
    faults = request.app[FAULTS_KEY]
    if faults.insert_while_paging and records:
        # After answering, so the *next* page sees the shifted list.
        _insert_transactions(state, data, records, faults)
    return json_response([t.to_json() for t in page])


def _insert_transactions(state: EmulatorState, data: UserData, around: list[Transaction],
                         faults: Faults) -> None:
    """Copies of listed transactions with new ids: under any sort they land among the
    existing items (not only at the end), so later pages shift."""
    for _ in range(faults.insert_while_paging):
        model = faults.rng.choice(around)
        state.counters.faults["insert"] += 1
        data.transactions[model.account_id].append(attrs.evolve(
            model, id=state.new_id("transaction"), label=f"{model.label} (new)"))


async def get_transaction(request: web.Request) -> web.Response:
    _, data = _user_data(request, _READ_TRANSACTIONS)
    wanted = _path_id(request, "transaction_id")
    for tx in data.all_transactions():
        if tx.id == wanted:
            return json_response(tx.to_json())
    raise not_found("transaction", request.match_info["transaction_id"])


async def list_categories(request: web.Request) -> web.Response:
    _authorize(request, (), user=False)
    out = []
    labels = {c[0]: c[1] for c in CATEGORIES}
    for cid, label, kind, parent in CATEGORIES:
        item: dict[str, Any] = {"id": cid, "label": label, "type": kind}
        if parent is not None:
            item["parent"] = {"id": parent, "label": labels[parent]}
        out.append(item)
    return json_response(out)


# ------------------------------------------------------------------------ the application
def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else request.path
    return f"{request.method} {canonical}"


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count the request, and turn raised problems into the reference's error bodies."""
    request.app[STATE_KEY].counters.requests[_route_name(request)] += 1
    try:
        return await handler(request)
    except HTTPProblem as problem:
        return problem.response()
    except web.HTTPNotFound:
        return json_error(404, "RESOURCE_UNKNOWN", f"no such path {request.path}")
    except web.HTTPMethodNotAllowed as exc:
        return json_error(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here",
                          {"Allow": ",".join(sorted(exc.allowed_methods))})  # RFC 9110
    except web.HTTPException as exc:
        # aiohttp's own errors (413 for a body over client_max_size...) in the JSON shape
        # that every host uses, rather than aiohttp's text/plain pages.
        if exc.status < 400:
            raise
        code = "INTERNAL_ERROR" if exc.status >= 500 else "BAD_PARAMETER"
        return json_error(exc.status, code, exc.reason)
    except ConnectionError:
        raise  # the client went away: nobody to answer, nothing failed here
    except Exception:
        log.exception("the emulator failed on %s %s", request.method, request.path_qs)
        return json_error(500, "INTERNAL_ERROR", "unexpected error in the emulator")


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault("X-Request-ID", uuid.uuid4().hex)


API = "/api/v2.1"
#: Where POST /users's Location points, as the reference spells it: served too, so that
#: a Location resolves on the server that sent it.
REFERENCE_USER = "/v2.1/users/{user_id}"


def build_app(state: EmulatorState, faults: Faults) -> web.Application:
    """`faults` is read on every request, so changing it changes a running server."""
    app = web.Application(middlewares=[
        problems,
        fault_middleware(faults, lambda kind: state.counters.faults.update([kind])),
    ])
    app[STATE_KEY] = state
    app[FAULTS_KEY] = faults
    app.on_response_prepare.append(_add_request_id)
    app.add_routes([
        web.post("/auth/token", token_endpoint),
        web.post(f"{API}/users", create_user),
        web.get(f"{API}/users/me", get_user),
        web.get(f"{API}/users/{{user_id}}", get_user),
        web.delete(f"{API}/users/{{user_id}}", delete_user),
        web.get(f"{API}/connections", list_connections),
        web.get(f"{API}/connections/{{connection_id}}", get_connection),
        web.delete(f"{API}/connections/{{connection_id}}", delete_connection),
        web.get(f"{API}/accounts", list_accounts),
        web.get(f"{API}/accounts/{{account_id}}", get_account),
        web.patch(f"{API}/accounts/{{account_id}}", update_account),
        web.get(f"{API}/transactions", list_transactions),
        web.get(f"{API}/transactions/{{transaction_id}}", get_transaction),
        web.get(f"{API}/categories", list_categories),
        web.get(REFERENCE_USER, get_user),
        web.delete(REFERENCE_USER, delete_user),
    ])
    app.add_routes(widget_routes(state))
    return app


__all__ = ["SCOPES", "build_app"]
