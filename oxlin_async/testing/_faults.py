"""Fault injection: latency, error answers, dropped connections, truncated bodies,
early token expiry, and transactions inserted while a client pages.

Every decision is drawn from one `random.Random(seed)` in request order, so the same
sequence of requests meets the same faults. Faults can be changed while the server runs
(`sandbox.faults.rate_503 = 0.2`, or `sandbox.set_faults(...)`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import attrs
from aiohttp import web

from ._http import json_error
from ._peer import peer_body

_ERRORS = {
    429: ("TOO_MANY_REQUESTS", "Rate limit exceeded, retry later"),
    500: ("INTERNAL_ERROR", "Unexpected error (injected)"),
    502: ("BAD_GATEWAY", "Bad gateway (injected)"),
    503: ("SERVICE_UNAVAILABLE", "Service unavailable (injected)"),
    504: ("GATEWAY_TIMEOUT", "Gateway timeout (injected)"),
}


@attrs.define
class Faults:
    """What goes wrong, and how often. Rates are probabilities per request (0 to 1)."""

    seed: int = 0
    #: added to every response, in seconds: fixed part and uniform jitter on top
    latency: float = 0.0
    jitter: float = 0.0
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_502: float = 0.0
    rate_503: float = 0.0
    #: a gateway's timeout, as a proxy in front of the API may answer (not in `uniform`)
    rate_504: float = 0.0
    #: the server sends headers and part of the body, then closes the connection
    rate_drop: float = 0.0
    #: a 200 whose JSON body is cut short (Content-Length matches the cut body)
    rate_truncate: float = 0.0
    #: a newly issued access token dies after a random fraction of its lifetime
    rate_early_expiry: float = 0.0
    #: on each GET /transactions, insert this many new transactions into the listed data
    insert_while_paging: int = 0
    #: answer with the shapes public connectors observe where they differ from the
    #: reference (docs/oxlin-api §15): a string ``classification``, ``owner: {}``, empty
    #: ``loan``/``savings``/``credit_card``, extra transaction fields (see `_peer`)
    peer_shapes: bool = False
    #: Retry-After sent with injected 429 and 503 answers, in whole seconds
    retry_after: int = 1
    #: path prefixes that faults apply to (the widget's pages are left alone, but not the
    #: short alias of the widget-session endpoint, which is API like its canonical path)
    paths: tuple[str, ...] = ("/auth/", "/api/", "/embed/v2.1/", "/embed/widget_session")
    rng: random.Random = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    @classmethod
    def uniform(cls, rate: float, *, seed: int = 0, **kwargs: float) -> Faults:
        """`rate` spread over every kind of failing answer (the CLI's `--fault-rate`)."""
        share = rate / 6
        return cls(seed=seed, rate_429=share, rate_500=share, rate_502=share, rate_503=share,
                   rate_drop=share, rate_truncate=share, **kwargs)  # type: ignore[arg-type]

    def reseed(self, seed: int | None = None) -> None:
        if seed is not None:
            self.seed = seed
        self.rng = random.Random(self.seed)

    def update(self, other: Faults) -> None:
        """Take every setting of `other`, in place (running servers hold this object)."""
        for field in attrs.fields(Faults):
            if field.init:
                setattr(self, field.name, getattr(other, field.name))
        self.reseed()

    @property
    def any_errors(self) -> bool:
        return any((self.rate_429, self.rate_500, self.rate_502, self.rate_503,
                    self.rate_drop, self.rate_truncate, self.rate_504))

    def draw_error(self) -> int | str | None:
        """One draw per request: a status to answer with, 'drop', 'truncate', or None."""
        roll = self.rng.random()
        for outcome, rate in ((429, self.rate_429), (500, self.rate_500), (502, self.rate_502),
                              (503, self.rate_503), ("drop", self.rate_drop),
                              ("truncate", self.rate_truncate), (504, self.rate_504)):
            if roll < rate:
                return outcome
            roll -= rate
        return None

    def token_lifetime(self, lifetime: float) -> float:
        if self.rate_early_expiry and self.rng.random() < self.rate_early_expiry:
            return lifetime * self.rng.uniform(0.0, 0.5)
        return lifetime


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fault_middleware(faults: Faults, on_fault: Callable[[str], None]
                     ) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(faults.paths):
            return await handler(request)
        delay = faults.latency + (faults.rng.uniform(0, faults.jitter) if faults.jitter else 0)
        outcome = faults.draw_error() if faults.any_errors else None
        if delay:
            await asyncio.sleep(delay)
        if isinstance(outcome, int):
            on_fault(str(outcome))
            code, text = _ERRORS[outcome]
            headers = {"Retry-After": str(faults.retry_after)} if outcome in (429, 503) else None
            return json_error(outcome, code, text, headers)
        response = await handler(request)
        if (faults.peer_shapes and response.status == 200 and isinstance(response, web.Response)
                and isinstance(response.body, bytes)):
            response.body = peer_body(request.path, response.body)
        if outcome is None or not isinstance(response, web.Response) or response.status >= 300:
            return response
        body = bytes(response.body) if isinstance(response.body, (bytes, bytearray)) else b""
        if outcome == "drop" and not body and request.transport is not None:
            # Done, but the answer is lost (a 201 or 204): the connection closes unanswered.
            on_fault(outcome)
            request.transport.close()
            raise asyncio.CancelledError
        if len(body) < 2:
            return response
        on_fault(outcome)
        cut = body[: len(body) // 2]
        if outcome == "truncate":
            response.body = cut
            return response
        # "drop": promise the whole body, send half, then close the connection.
        stream = web.StreamResponse(status=response.status, headers=response.headers)
        stream.content_length = len(body)
        await stream.prepare(request)
        await stream.write(cut)
        if request.transport is not None:
            request.transport.close()
        return stream

    return middleware
