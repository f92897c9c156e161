"""A real rate limit: a token bucket per client id, answering 429 with a Retry-After.

Oxlin publishes no rate limit (docs/oxlin-api §11: it may answer 429 at any time, always
with ``Retry-After``); a gateway in front of an API typically meters each API client. Here
each client id has a bucket of `RateLimit.burst` tokens that refills at `RateLimit.rate`
tokens a second; a request takes one token, or is refused with 429 when the bucket is
empty. A refused request takes nothing, so a client that keeps asking does not dig the
hole deeper. ``Retry-After`` is the time until the bucket holds a token again, rounded
up to whole seconds (RFC 9110 §10.2.3 allows only whole seconds): at least 1.

Why the default burst is one second of the rate: a client that honours a whole-second
Retry-After pauses while the bucket refills, and a bucket that holds one second of
tokens is just full when that pause ends, so the pause wastes none of the limit.

The client is who the request names: the client of its bearer token (an API request),
or of its Basic credentials (a token request). Requests that name no client (a form
body's client id is not read: the limit must stay cheap) share one bucket.

The decision is a few float operations per request and the clock is injectable
(`Buckets(clock=...)`), so tests can drive it exactly.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from collections.abc import Awaitable, Callable

import attrs
from aiohttp import web

from ._faults import API_PATHS
from ._http import json_error
from ._state import EmulatorState


def _positive_rate(_: object, __: object, value: float) -> None:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"the rate must be a positive number of requests per second, "
                         f"got {value!r}")


def _default_burst(limit: RateLimit) -> int:
    rate = limit.rate
    # A bad rate gets a placeholder here: its validator then says what is wrong.
    ok = isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0
    return max(1, math.ceil(rate)) if ok else 1


@attrs.frozen
class RateLimit:
    """`rate` requests per second per client id, with bursts of up to `burst` requests
    (default: one second of the rate)."""

    rate: float = attrs.field(validator=_positive_rate)
    burst: int = attrs.field(default=attrs.Factory(_default_burst, takes_self=True))

    @burst.validator
    def _check_burst(self, _: object, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"the burst must be a whole number of requests >= 1, "
                             f"got {value!r}")

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``RPS`` or ``RPS,BURST`` (the command line's ``--rate-limit``)."""
        rate, _, burst = text.partition(",")
        try:
            value = float(rate)
            return cls(value) if not burst.strip() else cls(value, int(burst))
        except ValueError as exc:
            raise ValueError(f"expected RPS[,BURST] (e.g. 200 or 200,50): {exc}") from None

    def __str__(self) -> str:
        return f"{self.rate:g} requests/s per client id, burst {self.burst}"


@attrs.define
class _Bucket:
    tokens: float
    at: float


class Buckets:
    """The buckets of every client id under one `RateLimit` (None: no limit). Setting
    `limit` starts every bucket full again."""

    def __init__(self, limit: RateLimit | None = None, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._limit = limit
        self._buckets: dict[str, _Bucket] = {}

    @property
    def limit(self) -> RateLimit | None:
        return self._limit

    @limit.setter
    def limit(self, value: RateLimit | None) -> None:
        self._limit = value
        self._buckets.clear()

    def take(self, client_id: str) -> int | None:
        """Take a token for one request of `client_id`: None when admitted, else the
        whole seconds until the bucket holds a token again (the Retry-After)."""
        limit = self._limit
        if limit is None:
            return None
        now = self.clock()
        bucket = self._buckets.get(client_id)
        if bucket is None:
            bucket = self._buckets[client_id] = _Bucket(float(limit.burst), now)
        else:
            bucket.tokens = min(float(limit.burst),
                                bucket.tokens + (now - bucket.at) * limit.rate)
            bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / limit.rate))


def client_of(state: EmulatorState, request: web.Request) -> str:
    """The client id a request names (its bearer token's, or its Basic credentials'),
    or "" when it names none."""
    kind, _, value = request.headers.get("Authorization", "").partition(" ")
    kind = kind.lower()
    if kind == "bearer":
        token = state.tokens.get(value.strip())
        return token.client_id if token is not None else ""
    if kind == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return ""
        return decoded.partition(":")[0]
    return ""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def rate_limit_middleware(state: EmulatorState, buckets: Buckets
                          ) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Before any latency or fault: a gateway refuses at once, without asking the API."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Where faults apply by default: the API hosts, not the widget's pages.
        if buckets.limit is None or not request.path.startswith(API_PATHS):
            return await handler(request)
        wait = buckets.take(client_of(state, request))
        if wait is None:
            state.counters.admitted += 1
            return await handler(request)
        state.counters.refused += 1
        return json_error(429, "TOO_MANY_REQUESTS", "Rate limit exceeded, retry later",
                          {"Retry-After": str(wait)})

    return middleware
