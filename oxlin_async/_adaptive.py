"""Adaptive concurrency for bulk work: how many requests to keep in flight, learned from
the answers, as TCP learns its congestion window (AIMD).

Oxlin publishes no rate limit (docs/oxlin-api §11): it answers 429 with ``Retry-After``
when a client sends too much. A fixed concurrency is a guess: too low wastes the run,
too high turns into a storm of 429s. `AIMD` decides instead, from each answer:

* **start low** (`AIMD.initial`), then **slow start**: +1 per fast 2xx answer, so the
  limit doubles each round trip (each `AIMD.probe_period` when round trips are
  shorter), until the first back-off;
* then **additive increase**: +1/limit per fast 2xx answer, one more request in flight
  per round trip (or per `AIMD.probe_period`). It grows only while the limit is in use
  (at least half of it in flight), so a run that has little to do does not inflate it;
* **multiplicative decrease**: x `AIMD.backoff` (0.5) on a 429 or a 503 (the API says
  slow down) and on an attempt that got no answer (a timeout, a dropped connection).
  Once a round trip's worth of answers has come since the last back-off, a 429 sets
  the limit to `AIMD.share_backoff` (0.9) x what the API took meanwhile instead
  (`AIMD.taken`: 2xx answers a second x the usual latency), when that is lower: a
  bucket that holds a second of requests hides how far the limit overshot, the
  answers do not. x `AIMD.latency_backoff` (0.8) when answers come well above their
  usual latency
  (the recent average above `tolerance` times the long-run one, and `slack` seconds
  above it: a queue is building up somewhere). At most once per round trip: an answer
  to a request sent before the last decrease was sent under the old limit, and the
  decrease already accounted for it;
* always within [`AIMD.minimum`, `AIMD.maximum`].

The wait a 429 asks for is not decided here: the transport's client-wide gate honours
``Retry-After`` for every request of the client (`_transport`). The decisions take the
time as an argument and keep no clock, so a fake clock drives them in tests.

**Fair shares without talking.** Several processes (the workers of a sharded export)
that share one API limit each run their own `AIMD`. When the shared limit is exceeded,
each of them meets 429s and cuts its limit by a factor b < 1 (0.5 of the limit, or 0.9
of what the API gave it: one bucket serves each process about in proportion to what it
sends, so that too is about the same fraction of each one's limit); between those
moments each adds the same one request per round trip (they talk to the same API, so
their round trips are alike). Additive increase keeps the difference between two
processes' limits as it is; multiplicative decrease multiplies it by b. After k shared
back-offs the difference is at most b^k of what it was: the limits converge to equal
shares of the API, whatever they started at (Chiu and Jain, 1989; the argument for TCP's
fairness). A process that sends more meets the exhausted limit more often (its share of
the 429s follows its share of the requests), which only speeds this up. As for TCP,
shares are equal in requests in flight: a process with slower round trips gets
proportionally fewer requests a second.

`AdaptiveLimit` applies the decisions: a semaphore whose size follows the controller,
held by each request of a bulk run and told each attempt's outcome by the transport
(``observe``). A fixed concurrency is the same object with equal bounds.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import math
import time
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import attrs

from .errors import ArgumentError

#: A bulk run's concurrency: "auto" (adaptive) or a number of requests in flight (pinned).
Concurrency: TypeAlias = int | Literal["auto"]

#: Statuses that mean "slow down" (docs/oxlin-api §10: 429 rate limited, 503 overload).
THROTTLED = frozenset({429, 503})


class Decision(enum.Enum):
    GROW = "grow"
    BACK_OFF = "back off"
    HOLD = "hold"


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


@attrs.define
class AIMD:
    """The decisions, as pure functions of what happened and when (see the module doc).

    `limit` is a float: additive increase adds fractions; `AdaptiveLimit` uses its whole
    part.
    """

    minimum: int = attrs.field(default=1, validator=_at_least_one)
    maximum: int = attrs.field(default=64, validator=_at_least_one)
    initial: int = attrs.field(default=8, validator=_at_least_one)
    backoff: float = 0.5
    #: on a 429, the limit becomes this share of what the API took since the last
    #: back-off, when that is known (see `on_answer`)
    share_backoff: float = 0.9
    latency_backoff: float = 0.8
    #: "well above": the recent latency is over `tolerance` x the long-run one ...
    tolerance: float = 2.0
    #: ... and over it by more than `slack` seconds (a few ms of jitter are not a queue)
    slack: float = 0.05
    limit: float = attrs.field(init=False)
    #: until the first back-off: +1 per fast answer instead of +1/limit
    slow_start: bool = attrs.field(init=False, default=True)
    #: after the first back-off the limit grows by one per round trip, or per this many
    #: seconds when round trips are shorter (see `on_answer`)
    probe_period: float = 0.25
    #: the latency averages (seconds) over the last ~5 answers and the last ~50
    recent: float | None = attrs.field(init=False, default=None)
    usual: float | None = attrs.field(init=False, default=None)
    #: when the limit last went down; answers to requests sent before do not count again
    decreased_at: float = attrs.field(init=False, default=-math.inf)
    #: 2xx answers since `since`: the first answer to a request sent after the last
    #: back-off (or the run's first answer)
    ok: int = attrs.field(init=False, default=0)
    since: float | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum} is above maximum {self.maximum}")
        if not all(0 < f < 1 for f in (self.backoff, self.share_backoff,
                                       self.latency_backoff)):
            raise ValueError("the back-off factors must be between 0 and 1")
        self.limit = float(min(self.maximum, max(self.minimum, self.initial)))

    def on_answer(self, status: int | None, sent: float, now: float,
                  in_flight: int) -> Decision:
        """One attempt's outcome: its HTTP status (None: no answer), when it was sent and
        when it ended, and how many requests were in flight then (itself included).

        Growth is +1 per fast answer in slow start (the limit doubles each round
        trip), +1/limit after it (one more per round trip), both times
        ``min(1, round trip / probe_period)``: a per-second limit with a burst of a
        second's worth hides an overshoot until its bucket is empty, so growing faster
        than a few steps a second only overshoots further before the API can say so.
        For the same reason a 429 sets the limit to `share_backoff` x what the API took
        since the last back-off (`taken`) once that is known, rather than halving a
        limit that may be far above it: from one empty bucket to the next, the 2xx
        answers count exactly what the limit let through. Both are multiplicative
        decreases (of the limit, or of the rate the API gave)."""
        if status is None or status in THROTTLED:
            return self._decrease(sent, now, self.backoff, measured=status is not None)
        if not 200 <= status < 300:
            return Decision.HOLD  # a 404 or a 401 says nothing about the load
        if sent >= self.decreased_at:
            # What the API takes is counted from the first answer to a request sent
            # under the current limit: a Retry-After pause right after a back-off (the
            # transport's gate: nothing is sent) would otherwise count as time the API
            # took nothing, and the next 429 would cut the limit below the API's pace.
            if self.since is None:
                self.since = now
            else:
                self.ok += 1
        latency = now - sent
        if self.recent is None or self.usual is None:
            self.recent = self.usual = latency
        else:
            self.recent += 0.2 * (latency - self.recent)
            self.usual += 0.02 * (latency - self.usual)
        if self._slow(self.recent):
            decision = self._decrease(sent, now, self.latency_backoff)
            if decision is Decision.BACK_OFF:
                self.recent = self.usual  # the next back-off needs new slow answers
            return decision
        if in_flight * 2 < self.limit or self.limit >= self.maximum or self._slow(latency):
            return Decision.HOLD  # not using what it has, or not fast: no reason to grow
        pace = min(1.0, self.usual / self.probe_period)
        step = pace if self.slow_start else pace / self.limit
        self.limit = min(float(self.maximum), self.limit + step)
        return Decision.GROW

    def _slow(self, latency: float) -> bool:
        """Well above the usual latency (`tolerance` times, and by `slack` seconds)."""
        assert self.usual is not None
        return latency > self.tolerance * self.usual and latency - self.usual > self.slack

    def taken(self, now: float) -> float | None:
        """Requests in flight the API took on average since the last back-off (2xx
        answers a second x the usual latency); None before a round trip's worth."""
        if self.since is None or self.usual is None or now <= self.since \
                or self.ok < self.limit:
            return None
        return self.ok / (now - self.since) * self.usual

    def _decrease(self, sent: float, now: float, factor: float, *,
                  measured: bool = False) -> Decision:
        if sent < self.decreased_at:
            return Decision.HOLD  # sent under the old limit: already accounted for
        taken = self.taken(now) if measured else None
        smaller = self.limit * factor if taken is None else min(
            self.limit, taken * self.share_backoff)
        self.limit = max(float(self.minimum), smaller)
        self.slow_start = False
        self.decreased_at = now
        self.since = None
        self.ok = 0
        return Decision.BACK_OFF


@attrs.frozen
class ConcurrencyStats:
    """How a bulk run's concurrency went: `mode` "auto" (adaptive) or "fixed"; `limit`
    the requests allowed in flight at the end, `peak` the highest, `mean` the average
    over time; `attempts` the attempts that ended (answered or not), `throttled` those
    answered 429."""

    mode: Literal["auto", "fixed"]
    limit: int
    peak: int
    mean: float
    attempts: int
    throttled: int

    @property
    def throttle_rate(self) -> float:
        """The share of attempts answered 429 (0 to 1)."""
        return self.throttled / self.attempts if self.attempts else 0.0


def check_concurrency(value: object, name: str = "concurrency") -> Concurrency:
    """`value` if it is "auto" or an int >= 1; else `ArgumentError` naming `name`."""
    if value == "auto":
        return "auto"
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ArgumentError(name, f"must be 'auto' or an int >= 1, got {value!r}")
    return value


def figures(stats: ConcurrencyStats) -> dict[str, Any]:
    """`stats` as a report writes them (the export's report, a shard's report)."""
    return {"mode": stats.mode, "limit": stats.limit, "peak": stats.peak,
            "mean": round(stats.mean, 2), "attempts": stats.attempts,
            "throttled": stats.throttled, "throttle_rate": round(stats.throttle_rate, 5)}


def throttling(attempts: int, throttled: int) -> dict[str, Any]:
    """Attempts and 429s summed over several runs (the shards of one export): the rate
    is of the sums, so that a shard with many requests weighs as much as it sent."""
    return {"attempts": attempts, "throttled": throttled,
            "throttle_rate": round(throttled / attempts, 5) if attempts else 0.0}


class AdaptiveLimit:
    """A semaphore whose size `controller` sets: ``acquire()``/``release()`` around each
    request, ``observe(status, latency)`` after each attempt (the transport calls it).
    Waiters are served in order; a shrinking limit takes effect as requests end."""

    def __init__(self, controller: AIMD, *, mode: Literal["auto", "fixed"] = "auto",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.controller = controller
        self.mode = mode
        self._clock = clock
        self._in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.attempts = self.throttled = 0
        self._peak = self.limit
        self._area = 0.0  # the integral of the limit over time, for its mean
        self._since = self._started = clock()

    def start(self) -> None:
        """The run starts now: the mean limit is over the time from here."""
        self._area, self._since = 0.0, self._clock()
        self._started = self._since

    @classmethod
    def fixed(cls, size: int) -> AdaptiveLimit:
        return cls(AIMD(minimum=size, maximum=size, initial=size), mode="fixed")

    @property
    def limit(self) -> int:
        return int(self.controller.limit)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def acquire(self) -> bool:
        if self._in_flight < self.limit and not self._waiters:
            self._in_flight += 1
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # `_wake` counts us in before it wakes us
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # woken and cancelled at once: pass the slot on
            else:
                self._waiters.remove(waiter)
            raise
        return True

    def release(self) -> None:
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)

    def observe(self, status: int | None, latency: float) -> None:
        """One attempt of a request holding this limit ended (`status` None: no answer)."""
        now = self._clock()
        before = self.limit
        self.attempts += 1
        if status == 429:
            self.throttled += 1
        self.controller.on_answer(status, now - latency, now, self._in_flight)
        after = self.limit
        if after != before:
            self._area += before * (now - self._since)
            self._since = now
            self._peak = max(self._peak, after)
            if after > before:
                self._wake()

    def stats(self) -> ConcurrencyStats:
        now = self._clock()
        span = now - self._started
        area = self._area + self.limit * (now - self._since)
        return ConcurrencyStats(mode=self.mode, limit=self.limit, peak=self._peak,
                                mean=area / span if span > 0 else float(self.limit),
                                attempts=self.attempts, throttled=self.throttled)

    def __repr__(self) -> str:
        return (f"<AdaptiveLimit {self.mode} limit={self.limit} in_flight={self._in_flight}"
                f" waiting={len(self._waiters)}>")
