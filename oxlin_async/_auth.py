"""Tokens, the single-flight manager that keeps one fresh, and where credentials go.

A `TokenManager` holds one token (the client's, or one user's). `get()` returns it
without taking any lock while it is fresh; when it is stale, the first caller starts one
renewal task and every other caller awaits that same task, so N concurrent requests at
expiry cause exactly one token request, and a failed renewal gives all of them the same
error. The next `get()` after a failure starts afresh.

An `Auth` strategy (after httpx's) says where a request's credentials go: `BearerAuth`
in the ``Authorization`` header, `WidgetFormAuth` in the widget's form body,
`ClientBasicAuth` as HTTP Basic client authentication for the token endpoint. The
transport asks it for a token, lets it sign each attempt, and on a 401 ``invalid_token``
tells it the token was refused and replays once (see `_transport`).
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

from .errors import TokenRenewalError

if TYPE_CHECKING:
    from ._options import Outgoing, RequestOptions

#: Renew when less than this share of the lifetime is left (and at most 60 s before expiry).
_MARGIN_SHARE = 0.1
_MARGIN_MAX = 60.0
#: One renewal (with the token request's own retries) ends within this many seconds...
DEFAULT_RENEWAL_DEADLINE = 300.0
#: ...and asks at most this many times for a token that is not expired when it arrives.
RENEWAL_ATTEMPTS = 3


@attrs.frozen
class Token:
    """An access token and what came with it. Secrets stay out of the repr."""

    access_token: str = attrs.field(repr=False)
    expires_at: float  # on the monotonic clock; inf when unknown
    scope: str = ""
    refresh_token: str | None = attrs.field(default=None, repr=False)
    lifetime: float = math.inf

    @property
    def refresh_at(self) -> float:
        if math.isinf(self.expires_at):
            return self.expires_at
        return self.expires_at - min(_MARGIN_MAX, self.lifetime * _MARGIN_SHARE)

    @classmethod
    def from_response(cls, body: dict[str, object], now: float) -> Token:
        lifetime = float(body["expires_in"])  # type: ignore[arg-type]
        refresh = body.get("refresh_token")
        return cls(access_token=str(body["access_token"]), expires_at=now + lifetime,
                   scope=str(body.get("scope", "")), lifetime=lifetime,
                   refresh_token=str(refresh) if refresh else None)


def _cancelling() -> bool:
    """Whether the current task itself is being cancelled (always False before 3.11)."""
    task = asyncio.current_task()
    return bool(task is not None and getattr(task, "cancelling", lambda: 0)())


#: Given the token being replaced (or None) and the call that needs the new one (whose
#: extra limits and stats the token request shares; None outside any call), obtain one.
Renew = Callable[[Token | None, "RequestOptions | None"], Awaitable[Token]]


class TokenManager:
    """Caches one token and renews it at most once at a time."""

    def __init__(self, renew: Renew, *, token: Token | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_token: Callable[[Token], None] | None = None,
                 deadline: float = DEFAULT_RENEWAL_DEADLINE) -> None:
        self._renew = renew
        #: called with each token a renewal obtains (to keep a rotated refresh token)
        self.on_token = on_token
        self._deadline = deadline
        self._clock = clock
        self._token = token
        self._stale = False
        self._closed = False
        self._renewing: asyncio.Task[Token] | None = None

    @property
    def token(self) -> Token | None:
        return self._token

    async def get(self, call: RequestOptions | None = None) -> Token:
        token = self._token
        if token is not None and not self._stale and self._clock() < token.refresh_at:
            return token
        task = self._renewing
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(token, call))
            self._renewing = task
        # shield: a caller that gives up must not cancel the renewal the others wait for.
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # `aclose()` cancelled the renewal under us: that is not *our* cancellation, and
            # a CancelledError would make a caller's task look cancelled when nobody asked.
            if self._closed and task.cancelled() and not _cancelling():
                raise RuntimeError("this client is closed") from None
            raise

    async def _run(self, previous: Token | None, call: RequestOptions | None) -> Token:
        # Bounded twice: a deadline for the whole renewal, and a cap on tokens that are
        # already expired when they arrive (a server granting lifetimes shorter than its
        # own latency would otherwise be asked forever, and the call never sent).
        try:
            for _ in range(RENEWAL_ATTEMPTS):
                timed_out = False
                try:
                    token = await asyncio.wait_for(self._renew(previous, call),
                                                   self._deadline)
                except asyncio.TimeoutError:
                    timed_out = True
                if timed_out:
                    raise TokenRenewalError(
                        f"the token renewal took longer than its {self._deadline:g}s deadline")
                if self.on_token is not None:
                    # even an expired pair: its refresh token was rotated by the server
                    self.on_token(token)
                if self._clock() < token.expires_at:
                    self._token, self._stale = token, False
                    return token
                previous = None  # an expired token's refresh token is not to be trusted
            raise TokenRenewalError(
                f"the token endpoint granted {RENEWAL_ATTEMPTS} tokens in a row that expired "
                f"before they arrived (expires_in {token.lifetime:g}s): a server fault")
        finally:
            self._renewing = None

    def is_current(self, token: Token) -> bool:
        """Whether `token` is still the cached one and unexpired (the renewal margin is
        for starting renewals early, not for refusing to send a valid token)."""
        return (token is self._token and not self._stale
                and self._clock() < token.expires_at)

    def invalidate(self, token: Token) -> None:
        """The server refused `token`: drop it, unless it was already replaced."""
        if self._token is token:
            self._stale = True

    async def aclose(self) -> None:
        self._closed = True
        task, self._renewing = self._renewing, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@attrs.frozen
class ClientCredentials:
    """The API client's id and secret; the secret stays out of the repr."""

    client_id: str
    client_secret: str = attrs.field(repr=False)


class Auth:
    """Where a request's credentials go. The base class sends none."""

    async def token(self, call: RequestOptions) -> Token | None:
        """The token to send `call` with (taken before it holds any slot); None for none."""
        return None

    def is_current(self, token: Token | None) -> bool:
        """Whether `token` may still be sent (queueing for a slot may have outlasted it)."""
        return True

    def apply(self, request: Outgoing, token: Token | None) -> None:
        """Write the credentials into one attempt's request."""

    def refused(self, token: Token | None) -> bool:
        """The server answered 401 ``invalid_token`` to `token`: drop it, and say whether
        a replay with a new one may succeed."""
        return False


class TokenAuth(Auth):
    """Credentials from a `TokenManager`: renewed when refused, then replayed once."""

    def __init__(self, tokens: TokenManager) -> None:
        self.tokens = tokens

    async def token(self, call: RequestOptions) -> Token:
        return await self.tokens.get(call)

    def is_current(self, token: Token | None) -> bool:
        return token is not None and self.tokens.is_current(token)

    def apply(self, request: Outgoing, token: Token | None) -> None:
        if token is not None:
            self.attach(request, token)

    def attach(self, request: Outgoing, token: Token) -> None:
        raise NotImplementedError

    def refused(self, token: Token | None) -> bool:
        if token is None:
            return False
        self.tokens.invalidate(token)  # only if it is still the cached one
        return True


class BearerAuth(TokenAuth):
    """``Authorization: Bearer <token>`` (RFC 6750 §2.1): every API call."""

    def attach(self, request: Outgoing, token: Token) -> None:
        request.headers["Authorization"] = f"Bearer {token.access_token}"


class WidgetFormAuth(TokenAuth):
    """The widget's way: client credentials and the user token in the form body."""

    def __init__(self, tokens: TokenManager, credentials: ClientCredentials) -> None:
        super().__init__(tokens)
        self._credentials = credentials

    def attach(self, request: Outgoing, token: Token) -> None:
        request.data = {**(request.data or {}), "client_id": self._credentials.client_id,
                        "client_secret": self._credentials.client_secret,
                        "access_token": token.access_token}


class ClientBasicAuth(Auth):
    """HTTP Basic client authentication (RFC 6749 §2.3.1): the token endpoint."""

    def __init__(self, credentials: ClientCredentials) -> None:
        pair = f"{credentials.client_id}:{credentials.client_secret}".encode()
        self._header = "Basic " + base64.b64encode(pair).decode()

    def __repr__(self) -> str:
        return "<ClientBasicAuth>"

    def apply(self, request: Outgoing, token: Token | None) -> None:
        request.headers["Authorization"] = self._header
