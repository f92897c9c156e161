"""The transport: the one path every request of a client takes, whatever user it is for.

How a request flows through `Transport.request(cast_to, options)`:

1. **Token.** ``options.auth`` (an `Auth` from `_auth`) is asked for a token before the
   request holds anything, since a renewal is a request of its own.
2. **Gate and slots.** The request waits at the client-wide gate (closed while a 429's
   Retry-After runs), takes the extra limits of ``options.limits`` in order, then a slot
   of the client-wide semaphore. If queueing outlasted the token, it starts again.
3. **Attached.** The strategy writes the token into this attempt's `Outgoing` copy (the
   ``Authorization`` header, or the widget's form body), and the request goes out.
4. **Decoded.** A body is read up to ``max_body_size`` bytes (beyond it:
   `ResponseTooLargeError`). A status the operation documents as success
   (``options.expect``) is decoded by ``cast_to`` here, inside the retry loop, so a
   truncated or wrong-shaped answer is a failed attempt like a 503. Any other status
   below 400 (a redirect, which is never followed, or an undocumented 2xx) is an
   `UnexpectedStatusError`.
5. **Retried.** Every failure becomes an `Outcome`; `_retry.retry_delay` decides from it
   and the policy whether and when to try again. A 401 ``invalid_token`` is not retried
   but replayed once with a new token, after ``auth.refused`` drops the old one.
6. **Raised.** What is not retried becomes the typed error of `errors`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import attrs
import yarl

from ._auth import Token
from ._convert import loads, structure, structure_list
from ._options import Outgoing, RequestOptions
from ._retry import Outcome, RetryPolicy, gate_delay, parse_retry_after, retry_delay
from ._version import __version__
from ._wire import page_decoder
from .errors import (
    APIError,
    ArgumentError,
    AuthenticationError,
    DecodeError,
    OxlinError,
    RequestTimeoutError,
    ResponseTooLargeError,
    TokenRenewalError,
    TransportError,
    api_error_from_response,
)

log = logging.getLogger("oxlin_async")
T = TypeVar("T")
R = TypeVar("R")

_UNSET: Any = object()

#: Bytes of one response body read at most, unless the client says otherwise: far above
#: any page of 500 items, far below what would strain a process's memory.
DEFAULT_MAX_BODY_SIZE = 16 * 2**20

#: How many times one call takes a new token that turns out stale before it is sent
#: (queueing outlasted it, or it expired on the way) before giving up.
_STALE_TOKEN_CAP = 4


@attrs.define
class Response:
    """One HTTP answer, as read off the wire."""

    status: int
    headers: Mapping[str, str]
    body: bytes = attrs.field(repr=False)  # a token answer's body holds secrets
    method: str
    url: yarl.URL
    _data: Any = attrs.field(default=_UNSET, repr=False)
    #: a token answer: its body is never excerpted into an error
    secret: bool = False

    @property
    def request_id(self) -> str | None:
        return self.headers.get("X-Request-ID")

    def json(self) -> Any:
        """The decoded body (decoded once, then cached)."""
        if self._data is _UNSET:
            try:
                self._data = loads(self.body)
            except DecodeError as exc:
                detail = exc.message.removeprefix("invalid JSON: ")
            else:
                return self._data
            # Raised here, not in the handler: nothing may chain to an error that saw
            # the body (a token answer's holds secrets).
            raise self.undecodable(f"the body is not valid JSON: {detail}")
        return self._data

    def undecodable(self, problem: str) -> DecodeError:
        """A `DecodeError` naming this response; a token answer is never excerpted."""
        return DecodeError(f"{self.method} {self.url.path}: {problem}", status=self.status,
                           request_id=self.request_id, body=None if self.secret else self.body)

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


# ----------------------------------------------------------------- what to decode into
def as_model(cls: type[T]) -> Callable[[Response], T]:
    """``cast_to`` for a body that is one model."""
    return lambda response: response.decode(cls)


def as_model_list(cls: type[T]) -> Callable[[Response], list[T]]:
    """``cast_to`` for a body that is a JSON array of models."""
    return lambda response: response.decode_list(cls)


def as_nothing(response: Response) -> None:
    """``cast_to`` when no value is wanted; a body that came must still be whole JSON
    (a truncated one means the answer was lost on the way)."""
    if response.body:
        response.json()


class _NoAnswer(Exception):
    """An attempt got no HTTP answer; carries the error to raise if it is not retried."""

    def __init__(self, error: OxlinError, *, reached_server: bool) -> None:
        self.error = error
        self.outcome = Outcome.no_answer(reached_server=reached_server)


#: Form fields whose values a server must not get to echo into an error message.
_SECRET_FIELDS = ("password", "refresh_token", "client_secret", "access_token")


def _sent_secrets(options: RequestOptions) -> tuple[str, ...]:
    data = options.data or {}
    return tuple(str(data[k]) for k in _SECRET_FIELDS if data.get(k))


def _replays(error: APIError) -> bool:
    # The API's 401s say invalid_token; one without a code (a proxy's, say) is about the
    # token too. invalid_client (the widget's bad client secret) a new token cannot fix.
    return isinstance(error, AuthenticationError) and error.code in (None, "invalid_token")


class Transport:
    """Owns (or borrows) the aiohttp session; see the module docstring."""

    def __init__(self, *, session: aiohttp.ClientSession | None = None,
                 max_concurrency: int = 64, timeout: float = 30.0,
                 retry: RetryPolicy | None = None, user_agent: str | None = None,
                 seed: int | None = None,
                 max_body_size: int = DEFAULT_MAX_BODY_SIZE) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if isinstance(max_body_size, bool) or not isinstance(max_body_size, int) \
                or max_body_size < 1:
            raise ArgumentError("max_body_size", "must be an int of at least 1 (bytes), "
                                                 f"got {max_body_size!r}")
        self.max_body_size = max_body_size
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
    async def request(self, cast_to: Callable[[Response], T], options: RequestOptions) -> T:
        """Send `options` until it succeeds or fails for good; return ``cast_to`` of the
        2xx answer, or raise the typed error."""
        stats = options.stats
        retries = 0
        replayed = False
        while True:
            if stats is not None:
                stats.requests += 1
                if options.oauth:
                    stats.token_requests += 1
            error: OxlinError
            try:
                response, token = await self._attempt(options)
            except _NoAnswer as failure:
                error, outcome = failure.error, failure.outcome
            else:
                if response.status in options.expect:
                    try:
                        return cast_to(response)
                    except DecodeError as undecodable:
                        error, outcome = undecodable, Outcome.bad_body(response.status)
                elif response.status < 400 or response.status > 599:
                    # Not documented, and not an error status either: asking again would
                    # get the same, and a redirect is not followed (no token leaves).
                    error = self._error(response, options.oauth, None, documented=False)
                    outcome = Outcome.answer(response.status)
                else:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"),
                                                    time.time())
                    outcome = Outcome.answer(response.status, retry_after)
                    error = self._error(response, options.oauth, retry_after,
                                        redact=_sent_secrets(options))
                    if (wait := gate_delay(outcome, self.retry)) is not None:
                        # Close the gate for the whole client, not just this request.
                        self._gate_until = max(self._gate_until, time.monotonic() + wait)
                    if (not replayed and options.auth is not None and _replays(error)
                            and options.auth.refused(token)):
                        log.debug("%s %s: 401, renewing the token and replaying",
                                  options.method, options.url.path)
                        replayed, retries = True, 0
                        continue
            delay = retry_delay(outcome, self.retry, retries, options.idempotent, self._rng)
            if delay is None:
                raise error
            retries += 1
            if stats is not None:
                stats.retries += 1
            log.info("%s %s failed (%s); retry %d in %.2fs", options.method,
                     options.url.path, type(error).__name__, retries, delay)
            await asyncio.sleep(delay)

    def _error(self, response: Response, oauth: bool, retry_after: float | None, *,
               documented: bool = True, redact: tuple[str, ...] = ()) -> APIError:
        return api_error_from_response(
            response.status, response.body, request_id=response.request_id,
            method=response.method, url=response.url.with_query(None),
            retry_after=retry_after, oauth=oauth, documented=documented,
            location=response.headers.get("Location"), redact=redact)

    async def _wait_gate(self) -> None:
        # A deadline, not an event: a later 429 may push it while we sleep.
        while (delay := self._gate_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await asyncio.sleep(delay)

    async def _attempt(self, options: RequestOptions) -> tuple[Response, Token | None]:
        auth = options.auth
        stale = 0
        while True:
            # The token is taken outside any slot (renewing needs a slot of its own), and
            # checked again once we hold one: queueing may have outlasted it.
            token = await auth.token(options) if auth is not None else None
            await self._wait_gate()
            held: list[asyncio.Semaphore] = []
            try:
                for limit in options.limits:
                    await limit.acquire()
                    held.append(limit)
                async with self._slots:
                    if auth is not None and not auth.is_current(token):
                        stale += 1
                        if stale >= _STALE_TOKEN_CAP:
                            raise TokenRenewalError(
                                f"{stale} tokens in a row were stale before the request "
                                "could be sent (the token endpoint grants lifetimes "
                                "shorter than it takes to use them)")
                        continue
                    await self._wait_gate()  # a 429 may have closed the gate while we queued
                    request = Outgoing.of(options)
                    if auth is not None:
                        auth.apply(request, token)
                    return await self._send(request), token
            finally:
                for limit in held:
                    limit.release()

    async def _send(self, request: Outgoing) -> Response:
        method, url = request.method, request.url
        # A borrowed session lacks our default headers.
        headers = request.headers if self._own else {**self._headers, **request.headers}
        try:
            async with self.http.request(method, url, params=request.params, json=request.json,
                                         data=request.data, headers=headers,
                                         timeout=self._timeout, allow_redirects=False) as resp:
                body = await self._read(resp, method, url)
                return Response(resp.status, resp.headers, body, method, url,
                                secret=request.secret)
        except asyncio.TimeoutError:
            raise _NoAnswer(RequestTimeoutError("the request timed out", method=method,
                                                url=url), reached_server=True) from None
        except aiohttp.ClientConnectorError as exc:
            # Refused or unreachable: the request never left, so even a POST may retry.
            raise _NoAnswer(TransportError(f"cannot connect: {exc.os_error}",
                                           method=method, url=url),
                            reached_server=False) from None
        except aiohttp.ClientError as exc:
            raise _NoAnswer(TransportError(f"connection failed: {type(exc).__name__}",
                                           method=method, url=url),
                            reached_server=True) from None
        except ValueError as exc:
            # aiohttp refuses a header it cannot send (a CR or LF in a value, say): a
            # bug or a hostile value, never worth retrying; the value is not repeated.
            raise TransportError(f"the request could not be sent: {type(exc).__name__}",
                                 method=method, url=url) from None

    async def _read(self, resp: aiohttp.ClientResponse, method: str, url: yarl.URL) -> bytes:
        """The body, or `ResponseTooLargeError` once it passes `max_body_size` (the rest
        is not read, and the connection is dropped)."""
        limit = self.max_body_size
        declared = resp.content_length
        too_large = declared is not None and declared > limit
        chunks: list[bytes] = []
        size = 0
        if not too_large:
            async for chunk in resp.content.iter_chunked(2**16):
                size += len(chunk)
                if size > limit:
                    too_large = True
                    break
                chunks.append(chunk)
        if too_large:
            resp.close()
            raise ResponseTooLargeError(
                f"{method} {url.path}: the response body is larger than max_body_size "
                f"({limit} bytes)", limit=limit, status=resp.status,
                request_id=resp.headers.get("X-Request-ID"))
        return b"".join(chunks)
