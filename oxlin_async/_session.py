"""The one HTTP session: concurrency limit, shared rate-limit gate, retries, error mapping.

Every request of a client, whatever user it is for, goes through `Session.request`. It
waits at the client-wide gate (closed while a 429's Retry-After runs), holds a slot of the
client-wide semaphore while on the wire, retries what is safe to retry with exponential
backoff and full jitter, attaches a bearer token from a `TokenManager` and replays once on
401 ``invalid_token``, and turns error answers into typed exceptions.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import attrs
import yarl

from . import __version__
from ._auth import Token, TokenManager
from ._convert import loads, structure, structure_list
from ._wire import page_decoder
from .errors import (
    APIError,
    AuthenticationError,
    DecodeError,
    OxlinError,
    RateLimitError,
    RequestTimeoutError,
    TransportError,
    api_error_from_response,
)

log = logging.getLogger("oxlin_async")
T = TypeVar("T")
R = TypeVar("R")

_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"})


@attrs.frozen
class RetryPolicy:
    """When and how long to retry.

    Idempotent requests (GET, DELETE, the status PATCH, token requests) are retried on
    connection errors, timeouts, unreadable bodies and `statuses`; other requests (POST
    /users) only when they cannot have reached the server. A Retry-After above
    `max_retry_after` is not waited for: the error is raised at once.
    """

    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    @classmethod
    def disabled(cls) -> RetryPolicy:
        return cls(max_retries=0)

    def backoff(self, retry: int, rng: random.Random) -> float:
        """Full jitter: uniform in [0, min(max, initial * 2**retry)]."""
        return rng.uniform(0, min(self.max_backoff, self.initial_backoff * 2 ** retry))


@attrs.define
class RequestStats:
    """Counts of one logical job's traffic (see `track`), e.g. one user in a bulk run."""

    requests: int = 0
    retries: int = 0
    token_requests: int = 0


#: The stats object requests of the current task count into (tasks inherit it).
current_stats: contextvars.ContextVar[RequestStats | None] = contextvars.ContextVar(
    "oxlin_current_stats", default=None)
#: Extra limits a request of the current task holds while on the wire (a job's global
#: and per-user bounds, say), always acquired in this order, before the client's own.
current_limits: contextvars.ContextVar[tuple[asyncio.Semaphore, ...]] = contextvars.ContextVar(
    "oxlin_current_limits", default=())


_UNSET: Any = object()


@attrs.define
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes = attrs.field(repr=False)  # a token answer's body holds secrets
    method: str
    url: yarl.URL
    _data: Any = attrs.field(default=_UNSET, repr=False)
    #: what the request's `decode` made of the body
    value: Any = attrs.field(default=None, repr=False)

    @property
    def request_id(self) -> str | None:
        return self.headers.get("X-Request-ID")

    def json(self) -> Any:
        """The decoded body (decoded once, then cached)."""
        if self._data is _UNSET:
            try:
                self._data = loads(self.body)
            except (ValueError, DecodeError) as exc:  # `loads` raises DecodeError itself
                detail = (exc.message.removeprefix("invalid JSON: ")
                          if isinstance(exc, DecodeError) else str(exc))
                raise DecodeError(
                    f"{self.method} {self.url.path}: the body is not valid JSON: {detail}",
                    status=self.status, request_id=self.request_id, body=self.body) from None
        return self._data

    def decode(self, cls: type[T]) -> T:
        """The body as one model; a wrong shape is a `DecodeError` naming this response."""
        return self._with_context(structure, cls)

    def decode_list(self, cls: type[T]) -> list[T]:
        """The body (a JSON array) as a list of models."""
        fast = page_decoder(cls)
        if fast is not None:
            try:
                return fast(self.body)
            except Exception:  # the slow path below says what is wrong
                pass
        return self._with_context(structure_list, cls)

    def _with_context(self, convert: Callable[[Any, type[T]], R], cls: type[T]) -> R:
        try:
            return convert(self.json(), cls)
        except DecodeError as error:
            error.status, error.request_id = self.status, self.request_id
            raise


class _Retryable(Exception):
    """An attempt failed in a way the policy may retry; carries what to raise otherwise."""

    def __init__(self, error: OxlinError, *, sent: bool, wait: float | None = None) -> None:
        self.error, self.sent, self.wait = error, sent, wait


def _retry_after(headers: Mapping[str, str]) -> float | None:
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None  # an HTTP-date: rare here; fall back to our own backoff


class Session:
    """Owns (or borrows) the aiohttp session; see the module docstring."""

    def __init__(self, *, session: aiohttp.ClientSession | None = None,
                 max_concurrency: int = 64, timeout: float = 30.0,
                 retry: RetryPolicy | None = None, user_agent: str | None = None,
                 seed: int | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self._own = session is None
        self._session = session
        if session is not None and session.connector is not None:
            # Waiting for a pooled connection counts against aiohttp's timeouts: stay below
            # the pool, and below its per-host limit too (our traffic goes to one or two
            # hosts). 0 means unlimited.
            connector = session.connector
            for pool in (connector.limit, connector.limit_per_host):
                if pool:
                    max_concurrency = min(max_concurrency, pool)
        self.max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self.retry = retry if retry is not None else RetryPolicy()
        self._rng = random.Random(seed)
        self._gate_until = 0.0
        self._headers = {"User-Agent": user_agent or f"oxlin-async/{__version__}",
                         "Accept": "application/json"}
        self._closed = False

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this client is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.max_concurrency,
                                             limit_per_host=self.max_concurrency)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._own and self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------------- requests
    async def request(self, method: str, url: yarl.URL, *, auth: TokenManager | None = None,
                      params: Mapping[str, str] | None = None, json: Any = None,
                      data: Mapping[str, str] | None = None,
                      headers: Mapping[str, str] | None = None,
                      idempotent: bool | None = None, oauth: bool = False,
                      decode: Callable[[Response], Any] | None = None) -> Response:
        """Send with retries; return a 2xx/3xx response or raise the typed error.

        `decode` turns a 2xx body into `response.value`; for an idempotent request, a
        body it cannot decode (a truncated one, say) is a failed attempt, retried.
        """
        replayed = False
        while True:
            response, token = await self._with_retries(
                method, url, params, json, data, headers or {}, auth,
                method in _IDEMPOTENT if idempotent is None else idempotent, oauth, decode)
            if response.status < 400:
                return response
            error = self._error(response, oauth)
            if (isinstance(error, AuthenticationError) and auth is not None
                    and token is not None and not replayed):
                # Drop the token only if it is still the cached one, then replay once.
                log.debug("%s %s: 401, renewing the token and replaying", method, url.path)
                auth.invalidate(token)
                replayed = True
                continue
            raise error

    def _error(self, response: Response, oauth: bool) -> APIError:
        return api_error_from_response(
            response.status, response.body, request_id=response.request_id,
            method=response.method, url=response.url.with_query(None),
            retry_after=_retry_after(response.headers), oauth=oauth)

    async def _with_retries(self, method: str, url: yarl.URL, params: Mapping[str, str] | None,
                            json: Any, data: Mapping[str, str] | None,
                            headers: Mapping[str, str], auth: TokenManager | None,
                            idempotent: bool, oauth: bool,
                            decode: Callable[[Response], Any] | None
                            ) -> tuple[Response, Token | None]:
        stats = current_stats.get()
        retries = 0
        while True:
            try:
                if stats is not None:
                    stats.requests += 1
                    if oauth:
                        stats.token_requests += 1
                response, token = await self._attempt(method, url, params, json, data, headers,
                                                      auth)
                if response.status in self.retry.statuses:
                    raise _Retryable(self._error(response, oauth), sent=True,
                                     wait=_retry_after(response.headers))
                if 200 <= response.status < 300:
                    if decode is not None:
                        response.value = decode(response)
                    elif idempotent and response.body:
                        response.json()  # a truncated body is a failed attempt, not a result
                return response, token
            except _Retryable as failure:
                error: OxlinError = failure.error
                too_long = failure.wait is not None and failure.wait > self.retry.max_retry_after
                if (retries >= self.retry.max_retries or (failure.sent and not idempotent)
                        or too_long):
                    raise error from None
                wait = (failure.wait if failure.wait is not None
                        else self.retry.backoff(retries, self._rng))
            except DecodeError as undecodable:
                if retries >= self.retry.max_retries or not idempotent:
                    raise
                error = undecodable
                wait = self.retry.backoff(retries, self._rng)
            retries += 1
            if stats is not None:
                stats.retries += 1
            log.info("%s %s failed (%s); retry %d in %.2fs", method, url.path,
                     type(error).__name__, retries, wait)
            await asyncio.sleep(wait)

    async def _wait_gate(self) -> None:
        # A deadline, not an event: a later 429 may push it while we sleep.
        while (delay := self._gate_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    async def _send(self, method: str, url: yarl.URL, params: Mapping[str, str] | None,
                    json: Any, data: Mapping[str, str] | None,
                    headers: Mapping[str, str]) -> Response:
        try:
            if not self._own:  # a borrowed session lacks our default headers
                headers = {**self._headers, **headers}
            async with self.http.request(method, url, params=params, json=json, data=data,
                                         headers=headers, timeout=self._timeout,
                                         allow_redirects=False) as resp:
                return Response(resp.status, resp.headers, await resp.read(), method, url)
        except asyncio.TimeoutError:
            raise _Retryable(RequestTimeoutError("the request timed out", method=method,
                                                 url=url), sent=True) from None
        except aiohttp.ClientConnectorError as exc:
            # Refused or unreachable: the request never left, so even a POST may retry.
            raise _Retryable(TransportError(f"cannot connect: {exc.os_error}",
                                            method=method, url=url), sent=False) from None
        except aiohttp.ClientError as exc:
            raise _Retryable(TransportError(f"connection failed: {type(exc).__name__}",
                                            method=method, url=url), sent=True) from None

    async def _attempt(self, method: str, url: yarl.URL, params: Mapping[str, str] | None,
                       json: Any, data: Mapping[str, str] | None, headers: Mapping[str, str],
                       auth: TokenManager | None) -> tuple[Response, Token | None]:
        while True:
            # The token is taken outside any slot (renewing needs a slot of its own), and
            # checked again once we hold one: queueing may have outlasted it.
            token = await auth.get() if auth is not None else None
            await self._wait_gate()
            held: list[asyncio.Semaphore] = []
            try:
                for limit in current_limits.get():
                    await limit.acquire()
                    held.append(limit)
                async with self._slots:
                    if auth is not None and token is not None and not auth.is_current(token):
                        continue
                    await self._wait_gate()  # a 429 may have closed the gate while we queued
                    if token is not None:
                        headers = {**headers, "Authorization": f"Bearer {token.access_token}"}
                    response = await self._send(method, url, params, json, data, headers)
                    break
            finally:
                for limit in held:
                    limit.release()
        if response.status == 429:
            wait = _retry_after(response.headers)
            if wait is not None and wait <= self.retry.max_retry_after:
                # Close the gate for the whole client, not just this request.
                self._gate_until = max(self._gate_until, time.monotonic() + wait)
        return response, token


__all__ = ["RateLimitError", "RequestStats", "Response", "RetryPolicy", "Session",
           "current_limits", "current_stats"]
