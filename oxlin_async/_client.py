"""`OxlinClient` (the client's own scope) and `UserClient` (one user's scope).

One client holds one HTTP session, the client token, and a cache of user tokens keyed
by user, so a service can keep one client for its whole life and serve many users
through it: ``client.as_user(email, password)`` costs no I/O, and two scopes for the
same user share one token.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import aiohttp
import yarl

from ._auth import Token, TokenManager
from ._session import Response, RetryPolicy, Session
from .environments import Environment
from .errors import ArgumentError, AuthenticationError, DecodeError, InvalidGrantError
from .resources import Accounts, Categories, ClientUsers, Connections, Transactions, Users, Widget
from .resources.users import _check_email, _check_password

if TYPE_CHECKING:
    from .bulk import BulkRun, BulkUser

#: The scopes of a user token unless told otherwise (README §4.3).
DEFAULT_USER_SCOPES = ("openid", "profile", "profile_edit", "accounts_read", "accounts_manage",
                       "connections_manage", "transactions_read")
CLIENT_SCOPES = ("users_create",)


class Core:
    """What the client and all its user scopes share: session, hosts, credentials."""

    def __init__(self, client_id: str, client_secret: str, environment: Environment,
                 session: Session) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.environment = environment
        self.session = session
        self._basic = "Basic " + base64.b64encode(
            f"{client_id}:{client_secret}".encode()).decode()

    def __repr__(self) -> str:
        return f"<Core client_id={self.client_id}>"

    async def grant(self, form: Mapping[str, str]) -> Token:
        """POST the token endpoint (form body, HTTP Basic client auth: plain RFC 6749)."""
        started = time.monotonic()
        response = await self.session.request(
            "POST", self.environment.token_url, data=form, idempotent=True, oauth=True,
            headers={"Authorization": self._basic})
        body = response.json()
        if (not isinstance(body, dict) or not isinstance(body.get("access_token"), str)
                or not isinstance(body.get("expires_in"), int) or body["expires_in"] <= 0):
            raise DecodeError("POST /token: the answer lacks access_token or expires_in",
                              status=response.status, request_id=response.request_id,
                              body=response.body)
        return Token.from_response(body, started)


class Scope:
    """Sends requests with one token manager's token."""

    def __init__(self, core: Core, tokens: TokenManager) -> None:
        self.core = core
        self.tokens = tokens

    async def request(self, method: str, url: yarl.URL, *,
                      params: Mapping[str, str] | None = None, json: Any = None,
                      idempotent: bool | None = None,
                      decode: Callable[[Response], Any] | None = None) -> Response:
        return await self.core.session.request(method, url, auth=self.tokens, params=params,
                                               json=json, idempotent=idempotent, decode=decode)


class UserClient(Scope):
    """One user's view of the API. Get it from `OxlinClient.as_user`."""

    def __init__(self, core: Core, tokens: TokenManager, *, email: str | None,
                 forget: Any) -> None:
        super().__init__(core, tokens)
        self.email = email
        self.user_id: str | None = None
        self._forget = forget
        self.users = Users(self)
        self.connections = Connections(self)
        self.accounts = Accounts(self)
        self.transactions = Transactions(self)
        self.categories = Categories(self)
        self.widget = Widget(self)

    def forget(self) -> None:
        """Drop this user's cached token (after the user is deleted, say)."""
        self._forget()

    def __repr__(self) -> str:
        who = self.email if self.email is not None else "<token>"
        return f"<UserClient {who}>"


class OxlinClient:
    """The entry point. Use it as an async context manager, or call `close()`.

    ``session``: an aiohttp session to use instead of creating one; the caller keeps
    ownership (it is not closed). ``max_concurrency`` bounds requests on the wire for the
    whole client (and is kept at or below the session's connection pool), ``timeout`` is
    per request attempt, ``retry`` a `RetryPolicy` (``RetryPolicy.disabled()`` for none).
    """

    def __init__(self, client_id: str, client_secret: str, *,
                 environment: Environment = Environment.SANDBOX,
                 session: aiohttp.ClientSession | None = None, max_concurrency: int = 64,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 user_scopes: Sequence[str] = DEFAULT_USER_SCOPES,
                 user_agent: str | None = None) -> None:
        if not client_id or not client_secret:
            raise ArgumentError("client_id" if not client_id else "client_secret",
                                "must be a non-empty str")
        self.client_id = client_id
        self.environment = environment
        self.user_scopes = tuple(user_scopes)
        self._core = Core(client_id, client_secret, environment,
                          Session(session=session, max_concurrency=max_concurrency,
                                  timeout=timeout, retry=retry, user_agent=user_agent))
        self._tokens = TokenManager(self._renew_client_token)
        self._user_tokens: dict[tuple[str, ...], TokenManager] = {}
        self._scope = Scope(self._core, self._tokens)
        self.users = ClientUsers(self._scope)
        self.categories = Categories(self._scope)

    def __repr__(self) -> str:
        return (f"<OxlinClient client_id={self.client_id} api={self.environment.api_url} "
                f"users_cached={len(self._user_tokens)}>")

    @property
    def session(self) -> Session:
        return self._core.session

    # ------------------------------------------------------------------------- tokens
    async def _renew_client_token(self, previous: Token | None) -> Token:
        # The client token never comes with a refresh token: ask again.
        return await self._core.grant({"grant_type": "client_credentials",
                                       "scope": " ".join(CLIENT_SCOPES)})

    def as_user(self, email: str, password: str, *,
                scopes: Sequence[str] | None = None) -> UserClient:
        """A scope acting as this user (password grant on first use; no I/O now)."""
        _check_email(email)
        _check_password(password)
        wanted = " ".join(scopes if scopes is not None else self.user_scopes)
        # Keyed by user, password and scopes; the password only as a digest.
        key = ("password", email.casefold(), hashlib.sha256(password.encode()).hexdigest(),
               wanted)
        core = self._core

        async def renew(previous: Token | None) -> Token:
            if previous is not None and previous.refresh_token:
                try:
                    return await core.grant({"grant_type": "refresh_token",
                                             "refresh_token": previous.refresh_token})
                except InvalidGrantError:
                    pass  # used, foreign or revoked: log in again
            return await core.grant({"grant_type": "password", "username": email,
                                     "password": password, "scope": wanted})

        return self._user_scope(key, renew, email=email)

    def as_user_token(self, access_token: str, refresh_token: str | None = None, *,
                      expires_in: float | None = None) -> UserClient:
        """A scope using a user token obtained elsewhere. With `refresh_token`, it renews
        itself; without, an expired token raises `AuthenticationError`."""
        if not access_token:
            raise ArgumentError("access_token", "must be a non-empty str")
        key = ("token", hashlib.sha256(access_token.encode()).hexdigest())
        core = self._core

        async def renew(previous: Token | None) -> Token:
            if previous is not None and previous.refresh_token:
                return await core.grant({"grant_type": "refresh_token",
                                         "refresh_token": previous.refresh_token})
            raise AuthenticationError(401, "invalid_token",
                                      "the user token expired and there is no refresh token "
                                      "to renew it")

        lifetime = float("inf") if expires_in is None else float(expires_in)
        # Without a refresh token nothing can renew it early: use it until it expires
        # (lifetime 0 gives no renewal margin) rather than refuse a still valid token.
        initial = Token(access_token=access_token, refresh_token=refresh_token,
                        expires_at=time.monotonic() + lifetime,
                        lifetime=lifetime if refresh_token else 0.0)
        return self._user_scope(key, renew, email=None, initial=initial)

    def _user_scope(self, key: tuple[str, ...], renew: Any, *, email: str | None,
                    initial: Token | None = None) -> UserClient:
        tokens = self._user_tokens.get(key)
        if tokens is None:
            tokens = self._user_tokens[key] = TokenManager(renew, token=initial)
        return UserClient(self._core, tokens, email=email,
                          forget=lambda: self._user_tokens.pop(key, None))

    def bulk_transactions(self, users: Iterable[BulkUser] | AsyncIterable[BulkUser],
                          **options: Any) -> BulkRun:
        """Every transaction of many users; see `oxlin_async.bulk.BulkRun` for options."""
        from .bulk import BulkRun

        return BulkRun(self, users, **options)

    # ----------------------------------------------------------------------- lifecycle
    async def close(self) -> None:
        """Cancel token renewals in flight and close the session (if we created it)."""
        for manager in [self._tokens, *self._user_tokens.values()]:
            await manager.aclose()
        await self._core.session.close()

    async def __aenter__(self) -> OxlinClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
