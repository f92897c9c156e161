"""`OxlinClient` (the client's own requests) and `UserClient` (one user's).

One client holds one transport, the client token, and a cache of user tokens keyed
by user, so a service can keep one client for its whole life and serve many users
through it: ``client.as_user(email, password)`` costs no I/O, and two views of the
same user share one token.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import attrs

from ._auth import (
    DEFAULT_RENEWAL_DEADLINE,
    BearerAuth,
    ClientBasicAuth,
    ClientCredentials,
    Renew,
    Token,
    TokenManager,
    WidgetFormAuth,
)
from ._gen import ODD_SINK, OddValues
from ._options import RequestOptions, RequestStats
from ._retry import RetryPolicy
from ._transport import DEFAULT_MAX_BODY_SIZE, Response, Transport
from .environments import Environment
from .errors import ArgumentError, AuthenticationError, InvalidGrantError
from .resources import Accounts, Categories, ClientUsers, Connections, Transactions, Users, Widget
from .resources.users import _check_email, _check_password

if TYPE_CHECKING:
    import asyncio

    from .bulk import BulkRun, BulkUser

T = TypeVar("T")

#: The scopes of a user token unless told otherwise (docs/oxlin-api §4.3).
DEFAULT_USER_SCOPES = ("openid", "profile", "profile_edit", "accounts_read", "accounts_manage",
                       "connections_manage", "transactions_read")
CLIENT_SCOPES = ("users_create",)


def _visible_ascii(value: object) -> bool:
    # RFC 6750 §2.1's b64token is narrower; visible ASCII is what a header can carry.
    return isinstance(value, str) and bool(value) and all("!" <= c <= "~" for c in value)


def _lifetime(value: object) -> float | None:
    """``expires_in`` as seconds: any positive finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return None
    if isinstance(value, int):
        return float(min(value, _LIFETIME_MAX)) if value > 0 else None
    finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
    return min(float(value), _LIFETIME_MAX) if finite and value > 0 else None


#: Longer lifetimes mean "practically forever"; capped so that time arithmetic stays finite.
_LIFETIME_MAX = 10 * 365 * 86400


def token_problem(body: object) -> str | None:
    """What is wrong with a token answer (RFC 6749 §5.1, docs/oxlin-api §4), naming the
    field, or None. Never quotes a secret value."""
    if not isinstance(body, dict):
        return "a token answer must be a JSON object"
    if not _visible_ascii(body.get("access_token")):
        return "access_token must be a non-empty string of visible ASCII characters"
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.casefold() != "bearer":
        shown = repr(token_type)[:40] if isinstance(token_type, str) else type(token_type).__name__
        return f"token_type must be Bearer, got {shown}"
    if _lifetime(body.get("expires_in")) is None:
        return "expires_in must be a positive finite number of seconds"
    refresh = body.get("refresh_token")
    if refresh is not None and not _visible_ascii(refresh):
        return "refresh_token must be a non-empty string of visible ASCII characters"
    if not isinstance(body.get("scope", ""), str):
        return "scope must be a string"
    return None


def _token_from(started: float) -> Callable[[Response], Token]:
    """``cast_to`` of a token answer; `started` is when it was asked for, the
    conservative origin of its lifetime."""

    def decode(response: Response) -> Token:
        body = response.json()
        problem = token_problem(body)
        if problem is not None:
            raise response.undecodable(problem)
        return Token.from_response({**body, "expires_in": _lifetime(body["expires_in"])},
                                   started)

    return decode


class ClientContext:
    """What a client and all its user views share: the transport, the hosts, and the
    client's credentials (which only the auth strategies read)."""

    def __init__(self, credentials: ClientCredentials, environment: Environment,
                 transport: Transport) -> None:
        self.client_id = credentials.client_id
        self.environment = environment
        self.transport = transport
        self._credentials = credentials
        self._token_auth = ClientBasicAuth(credentials)
        #: the fields that got an odd value (docs/oxlin-api §15), each logged once
        self.odd_values = OddValues()

    def __repr__(self) -> str:
        return f"<ClientContext client_id={self.client_id}>"

    def widget_auth(self, tokens: TokenManager) -> WidgetFormAuth:
        """The widget's form-body credentials for the holder of `tokens`."""
        return WidgetFormAuth(tokens, self._credentials)

    async def grant(self, form: Mapping[str, str], call: RequestOptions | None = None
                    ) -> Token:
        """POST the token endpoint (form body, HTTP Basic client auth: plain RFC 6749).

        `call`, the request that needs the token, lends it its extra limits and stats.
        """
        options = RequestOptions(
            method="POST", url=self.environment.token_url, data=form, idempotent=True,
            oauth=True, auth=self._token_auth, limits=call.limits if call else (),
            stats=call.stats if call else None)
        return await self.transport.request(_token_from(time.monotonic()), options)


class Requester:
    """Sends requests as one token's holder (the client, or one user), adding this view's
    per-call options (extra limits, a stats sink) to every request."""

    def __init__(self, context: ClientContext, tokens: TokenManager, *,
                 limits: tuple[asyncio.Semaphore, ...] = (),
                 stats: RequestStats | None = None) -> None:
        self.context = context
        self.tokens = tokens
        self.auth = BearerAuth(tokens)
        self.limits = limits
        self.stats = stats

    def with_options(self, *, limits: Sequence[asyncio.Semaphore] | None = None,
                     stats: RequestStats | None = None) -> Requester:
        """The same token holder, with every request holding `limits` (semaphores,
        acquired in order, before the client's own) and counting into `stats`."""
        return Requester(self.context, self.tokens,
                         limits=self.limits if limits is None else tuple(limits),
                         stats=self.stats if stats is None else stats)

    async def request(self, cast_to: Callable[[Response], T], options: RequestOptions) -> T:
        """Send `options` (Bearer-authenticated unless it says otherwise) and return
        ``cast_to`` of the answer; see `Transport.request`."""
        if options.auth is None or self.limits or self.stats is not None:
            options = attrs.evolve(
                options, auth=options.auth or self.auth, limits=self.limits + options.limits,
                stats=options.stats if options.stats is not None else self.stats)
        # The answer is decoded inside; odd values it holds are this client's to log.
        reset = ODD_SINK.set(self.context.odd_values)
        try:
            return await self.context.transport.request(cast_to, options)
        finally:
            ODD_SINK.reset(reset)


class UserClient(Requester):
    """One user's view of the API. Get it from `OxlinClient.as_user`."""

    def __init__(self, context: ClientContext, tokens: TokenManager, *, email: str | None,
                 forget: Callable[[], None], limits: tuple[asyncio.Semaphore, ...] = (),
                 stats: RequestStats | None = None) -> None:
        super().__init__(context, tokens, limits=limits, stats=stats)
        self.email = email
        self.user_id: str | None = None
        self.widget_auth = context.widget_auth(tokens)
        self._forget = forget
        self.users = Users(self)
        self.connections = Connections(self)
        self.accounts = Accounts(self)
        self.transactions = Transactions(self)
        self.categories = Categories(self)
        self.widget = Widget(self)

    def with_options(self, *, limits: Sequence[asyncio.Semaphore] | None = None,
                     stats: RequestStats | None = None) -> UserClient:
        """This user, with every request holding `limits` (semaphores, acquired in
        order, before the client's own) and counting into `stats`; the token is shared
        (``user_client.with_options(stats=RequestStats())``, say)."""
        view = UserClient(self.context, self.tokens, email=self.email, forget=self._forget,
                          limits=self.limits if limits is None else tuple(limits),
                          stats=self.stats if stats is None else stats)
        view.user_id = self.user_id
        return view

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
    ``max_body_size`` caps the bytes read of one response body (`ResponseTooLargeError`
    beyond it); ``token_deadline`` bounds one token renewal, retries included
    (`TokenRenewalError` after it).
    """

    def __init__(self, client_id: str, client_secret: str, *,
                 environment: Environment = Environment.SANDBOX,
                 session: aiohttp.ClientSession | None = None, max_concurrency: int = 64,
                 timeout: float = 30.0, retry: RetryPolicy | None = None,
                 user_scopes: Sequence[str] = DEFAULT_USER_SCOPES,
                 user_agent: str | None = None,
                 max_body_size: int = DEFAULT_MAX_BODY_SIZE,
                 token_deadline: float = DEFAULT_RENEWAL_DEADLINE) -> None:
        if not client_id or not client_secret:
            raise ArgumentError("client_id" if not client_id else "client_secret",
                                "must be a non-empty str")
        self.client_id = client_id
        self.environment = environment
        self.user_scopes = tuple(user_scopes)
        self._context = ClientContext(
            ClientCredentials(client_id, client_secret), environment,
            Transport(session=session, max_concurrency=max_concurrency, timeout=timeout,
                      retry=retry, user_agent=user_agent, max_body_size=max_body_size))
        if (isinstance(token_deadline, bool) or not isinstance(token_deadline, (int, float))
                or not 0 < token_deadline < math.inf):
            raise ArgumentError("token_deadline", "must be a positive finite number of "
                                                  f"seconds, got {token_deadline!r}")
        self._token_deadline = float(token_deadline)
        self._tokens = TokenManager(self._renew_client_token, deadline=self._token_deadline)
        self._user_tokens: dict[tuple[str, ...], TokenManager] = {}
        self._requester = Requester(self._context, self._tokens)
        self.users = ClientUsers(self._requester)
        self.categories = Categories(self._requester)

    def __repr__(self) -> str:
        return (f"<OxlinClient client_id={self.client_id} api={self.environment.api_url} "
                f"users_cached={len(self._user_tokens)}>")

    @property
    def transport(self) -> Transport:
        """The one path every request of this client takes (`max_concurrency`, `retry`)."""
        return self._context.transport

    # ------------------------------------------------------------------------- tokens
    async def _renew_client_token(self, previous: Token | None,
                                  call: RequestOptions | None) -> Token:
        # The client token never comes with a refresh token: ask again.
        return await self._context.grant({"grant_type": "client_credentials",
                                          "scope": " ".join(CLIENT_SCOPES)}, call)

    def as_user(self, email: str, password: str, *,
                scopes: Sequence[str] | None = None) -> UserClient:
        """A view acting as this user (password grant on first use; no I/O now)."""
        _check_email(email)
        _check_password(password)
        wanted = " ".join(scopes if scopes is not None else self.user_scopes)
        # Keyed by user, password and scopes; the password only as a digest.
        key = ("password", email.casefold(), hashlib.sha256(password.encode()).hexdigest(),
               wanted)
        context = self._context

        async def renew(previous: Token | None, call: RequestOptions | None) -> Token:
            if previous is not None and previous.refresh_token:
                try:
                    return await context.grant({"grant_type": "refresh_token",
                                                "refresh_token": previous.refresh_token},
                                               call)
                except InvalidGrantError:
                    pass  # used, foreign or revoked: log in again
            return await context.grant({"grant_type": "password", "username": email,
                                        "password": password, "scope": wanted}, call)

        return self._user_client(key, renew, email=email)

    def as_user_token(self, access_token: str, refresh_token: str | None = None, *,
                      expires_in: float | None = None,
                      on_token: Callable[[Token], None] | None = None) -> UserClient:
        """A view using a user token obtained elsewhere. With `refresh_token`, it renews
        itself; without, an expired token raises `AuthenticationError`. Refresh tokens
        are single-use: `on_token` is called with each new `Token` (its
        ``access_token``/``refresh_token`` are the pair to keep for the next session)."""
        if not _visible_ascii(access_token):
            raise ArgumentError("access_token", "must be a non-empty str of visible ASCII "
                                                "characters")
        if refresh_token is not None and not _visible_ascii(refresh_token):
            raise ArgumentError("refresh_token", "must be None or a non-empty str of "
                                                 "visible ASCII characters")
        key = ("token", hashlib.sha256(access_token.encode()).hexdigest())
        context = self._context

        async def renew(previous: Token | None, call: RequestOptions | None) -> Token:
            if previous is not None and previous.refresh_token:
                return await context.grant({"grant_type": "refresh_token",
                                            "refresh_token": previous.refresh_token}, call)
            raise AuthenticationError(401, "invalid_token",
                                      "the user token expired and there is no refresh token "
                                      "to renew it")

        lifetime = float("inf") if expires_in is None else float(expires_in)
        # Without a refresh token nothing can renew it early: use it until it expires
        # (lifetime 0 gives no renewal margin) rather than refuse a still valid token.
        initial = Token(access_token=access_token, refresh_token=refresh_token,
                        expires_at=time.monotonic() + lifetime,
                        lifetime=lifetime if refresh_token else 0.0)
        return self._user_client(key, renew, email=None, initial=initial, on_token=on_token)

    def _user_client(self, key: tuple[str, ...], renew: Renew, *, email: str | None,
                     initial: Token | None = None,
                     on_token: Callable[[Token], None] | None = None) -> UserClient:
        tokens = self._user_tokens.get(key)
        if tokens is None:
            tokens = self._user_tokens[key] = TokenManager(renew, token=initial,
                                                           deadline=self._token_deadline)
        if on_token is not None:
            tokens.on_token = on_token

        def forget() -> None:
            self._user_tokens.pop(key, None)

        return UserClient(self._context, tokens, email=email, forget=forget)

    def bulk_transactions(self, users: Iterable[BulkUser | tuple[str, str]]
                          | AsyncIterable[BulkUser | tuple[str, str]],
                          **options: Any) -> BulkRun:
        """Every transaction of many users; see `oxlin_async.bulk.BulkRun` for options.

        `users`: `oxlin_async.BulkUser` values or ``(email, password)`` tuples, in a list
        or any iterable or async iterable.

        Iterate it inside ``async with`` so that leaving the block early stops every
        request at once: ``async with client.bulk_transactions(users) as run:``.
        """
        from .bulk import BulkRun

        return BulkRun(self, users, **options)

    # ----------------------------------------------------------------------- lifecycle
    async def close(self) -> None:
        """Cancel token renewals in flight and close the aiohttp session (if we created it)."""
        for manager in [self._tokens, *self._user_tokens.values()]:
            await manager.aclose()
        await self._context.transport.close()

    async def __aenter__(self) -> OxlinClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()
