"""Tokens: what they are, and the single-flight manager that keeps one fresh.

A `TokenManager` holds one token (the client's, or one user's). `get()` returns it
without taking any lock while it is fresh; when it is stale, the first caller starts one
renewal task and every other caller awaits that same task, so N concurrent requests at
expiry cause exactly one token request, and a failed renewal gives all of them the same
error. The next `get()` after a failure starts afresh.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

import attrs

#: Renew when less than this share of the lifetime is left (and at most 60 s before expiry).
_MARGIN_SHARE = 0.1
_MARGIN_MAX = 60.0


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


#: Given the token being replaced (or None), obtain a new one.
Renew = Callable[[Token | None], Awaitable[Token]]


class TokenManager:
    """Caches one token and renews it at most once at a time."""

    def __init__(self, renew: Renew, *, token: Token | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._renew = renew
        self._clock = clock
        self._token = token
        self._stale = False
        self._closed = False
        self._renewing: asyncio.Task[Token] | None = None

    @property
    def token(self) -> Token | None:
        return self._token

    async def get(self) -> Token:
        token = self._token
        if token is not None and not self._stale and self._clock() < token.refresh_at:
            return token
        task = self._renewing
        if task is None:
            task = asyncio.get_running_loop().create_task(self._run(token))
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

    async def _run(self, previous: Token | None) -> Token:
        try:
            token = await self._renew(previous)
            self._token, self._stale = token, False
            return token
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

    def set(self, token: Token) -> None:
        self._token, self._stale = token, False

    async def aclose(self) -> None:
        self._closed = True
        task, self._renewing = self._renewing, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
