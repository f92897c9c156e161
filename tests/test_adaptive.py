"""The adaptive concurrency controller (`_adaptive.AIMD`), its decisions driven by a fake
clock, and `AdaptiveLimit`, the semaphore that applies them."""

from __future__ import annotations

import asyncio

import pytest
from _helpers import FakeClock

from oxlin_async._adaptive import AIMD, AdaptiveLimit, Decision

GROW, BACK_OFF, HOLD = Decision.GROW, Decision.BACK_OFF, Decision.HOLD


def answer(aimd: AIMD, clock: FakeClock, status: int | None = 200, *, latency: float = 0.5,
           in_flight: int | None = None) -> Decision:
    """One attempt sent `latency` ago ends now; by default the limit is all in use."""
    busy = in_flight if in_flight is not None else int(aimd.limit)
    return aimd.on_answer(status, clock.now - latency, clock.now, busy)


# ------------------------------------------------------------------------------- growth
def test_it_starts_low_and_doubles_each_round_trip_while_answers_are_fast() -> None:
    clock = FakeClock()
    aimd = AIMD(maximum=100)
    assert aimd.limit == 8
    for _ in range(8):  # one round trip of the 8 in flight
        assert answer(aimd, clock) is GROW
        clock.now += 0.01
    assert aimd.limit == 16
    for _ in range(16):
        answer(aimd, clock)
    assert aimd.limit == 32
    quick = AIMD(maximum=100)  # 25 ms round trips: it doubles each `probe_period`
    for _ in range(80):
        answer(quick, clock, latency=0.025)
    assert quick.limit == pytest.approx(16, rel=1e-4)


def test_after_a_back_off_it_adds_one_per_round_trip_and_probes_no_faster_than_its_period(
        ) -> None:
    clock = FakeClock()
    aimd = AIMD(maximum=100, initial=20)
    clock.now += 1
    assert answer(aimd, clock, 429, latency=0.01) is BACK_OFF
    assert aimd.limit == 10 and not aimd.slow_start
    clock.now += 1
    for _ in range(10):  # a round trip of 0.5 s: one more per round trip
        assert answer(aimd, clock, latency=0.5) is GROW
    assert aimd.limit == pytest.approx(11, abs=0.05)
    fast = AIMD(maximum=100, initial=20)
    clock.now += 1
    answer(fast, clock, 429, latency=0.01)
    clock.now += 1
    for _ in range(10):  # 25 ms round trips: a tenth of that, one per `probe_period`
        answer(fast, clock, latency=0.025)
    assert fast.limit == pytest.approx(10.1, abs=0.01)


def test_it_does_not_grow_a_limit_it_does_not_use() -> None:
    clock = FakeClock()
    aimd = AIMD(initial=10)
    for _ in range(50):
        assert answer(aimd, clock, in_flight=4) is HOLD  # fewer than half in flight
    assert aimd.limit == 10
    assert answer(aimd, clock, in_flight=5) is GROW


# ------------------------------------------------------------------------------ back-off
def test_a_429_halves_the_limit_once_per_round_trip() -> None:
    clock = FakeClock()
    aimd = AIMD(initial=32)
    sent = clock.now
    clock.now += 0.1
    assert aimd.on_answer(429, sent, clock.now, 32) is BACK_OFF
    assert aimd.limit == 16
    # the other 429s of that round trip were sent under the old limit: counted already
    for _ in range(10):
        clock.now += 0.001
        assert aimd.on_answer(429, sent + 0.05, clock.now, 16) is HOLD
    assert aimd.limit == 16
    # one sent after the back-off is news
    clock.now += 0.2
    assert aimd.on_answer(429, clock.now - 0.05, clock.now, 16) is BACK_OFF
    assert aimd.limit == 8


@pytest.mark.parametrize("status", [503, None])
def test_a_503_or_no_answer_backs_off_too_and_other_errors_say_nothing(
        status: int | None) -> None:
    clock = FakeClock()
    aimd = AIMD(initial=16)
    for other in (400, 401, 404, 500):
        assert answer(aimd, clock, other) is HOLD
    assert aimd.limit == 16
    assert answer(aimd, clock, status, latency=0.01) is BACK_OFF
    assert aimd.limit == 8


def test_a_429_after_a_round_trip_of_answers_sets_the_limit_to_what_the_api_took() -> None:
    clock = FakeClock()
    aimd = AIMD(initial=40, maximum=64)
    clock.now += 1
    answer(aimd, clock, 429, latency=0.01)  # a first back-off starts the count
    assert aimd.limit == 20
    # 100 answers in the next 2 s, each 0.2 s on the wire: the API took 50 a second,
    # 10 requests in flight on average, whatever the limit was (it grew meanwhile)
    for _ in range(100):
        clock.now += 0.02
        answer(aimd, clock, latency=0.2)
    assert aimd.limit > 20
    assert aimd.taken(clock.now) == pytest.approx(10, rel=1e-4)
    assert answer(aimd, clock, 429, latency=0.01) is BACK_OFF
    assert aimd.limit == pytest.approx(9, rel=1e-4)  # share_backoff x 10, not half of ~22


def test_a_retry_after_pause_does_not_count_as_time_the_api_took_nothing() -> None:
    clock = FakeClock()
    aimd = AIMD(initial=40, maximum=64)
    clock.now += 1
    answer(aimd, clock, 429, latency=0.01)
    assert aimd.limit == 20
    clock.now += 1.0  # the client waits out Retry-After: 1, sending nothing
    for _ in range(100):  # then the API takes 50 a second, 0.2 s each: 10 in flight
        clock.now += 0.02
        answer(aimd, clock, latency=0.2)
    assert aimd.taken(clock.now) == pytest.approx(10, rel=1e-4)  # not 100 / 3 s x 0.2
    assert answer(aimd, clock, 429, latency=0.01) is BACK_OFF
    assert aimd.limit == pytest.approx(9, rel=1e-4)


def test_latency_well_above_the_usual_backs_off_and_jitter_does_not() -> None:
    clock = FakeClock()
    aimd = AIMD(initial=16, maximum=16)
    for i in range(200):  # 100 ms give or take 30: jitter, not a queue
        clock.now += 0.01
        assert answer(aimd, clock, latency=0.07 + 0.06 * (i % 2)) is not BACK_OFF
    assert aimd.limit == 16
    decisions = []
    for _ in range(20):  # then a queue builds up: 400 ms answers
        clock.now += 0.01
        decisions.append(answer(aimd, clock, latency=0.4))
    assert decisions.count(BACK_OFF) == 1  # the rest were sent before it
    assert GROW not in decisions  # a slow answer is no reason to grow
    assert aimd.limit == pytest.approx(16 * 0.8)


# -------------------------------------------------------------------------------- bounds
def test_the_limit_stays_within_its_bounds() -> None:
    clock = FakeClock()
    aimd = AIMD(minimum=2, maximum=12, initial=50)
    assert aimd.limit == 12  # the initial value is clamped too
    for _ in range(100):
        answer(aimd, clock)
    assert aimd.limit == 12
    for _ in range(10):
        clock.now += 1
        answer(aimd, clock, 429, latency=0.01)
    assert aimd.limit == 2
    fixed = AIMD(minimum=5, maximum=5, initial=5)
    for status in (200, 429, 200, None, 200):
        clock.now += 1
        answer(fixed, clock, status, latency=0.01)
        assert fixed.limit == 5


@pytest.mark.parametrize("kwargs", [{"minimum": 10, "maximum": 5}, {"maximum": 0},
                                    {"initial": 0}, {"minimum": True}, {"backoff": 1.0},
                                    {"share_backoff": 0.0}, {"latency_backoff": 1.5}])
def test_bad_bounds_or_factors_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        AIMD(**kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- the semaphore
async def test_the_limit_holds_requests_back_and_lets_them_go_as_it_grows() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(AIMD(initial=2, maximum=4), clock=clock)
    limit.start()
    await limit.acquire()
    await limit.acquire()
    third = asyncio.ensure_future(limit.acquire())
    fourth = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    assert not third.done() and limit.in_flight == 2
    clock.now += 1
    limit.observe(200, 0.5)  # slow start: 3
    await asyncio.sleep(0)
    assert third.done() and not fourth.done() and limit.in_flight == 3
    clock.now += 1
    limit.observe(429, 0.01)  # halved: 1.5, the whole part counts
    assert limit.limit == 1
    for _ in range(3):
        limit.release()
    await asyncio.sleep(0)
    assert fourth.done() and limit.in_flight == 1  # the first free slot went to it
    limit.release()
    stats = limit.stats()
    assert (stats.mode, stats.limit, stats.peak, stats.attempts, stats.throttled) == (
        "auto", 1, 3, 2, 1)
    assert stats.throttle_rate == 0.5
    # 1 s at 2, 1 s at 3, then 1 at the end (no time passed at 1 yet)
    assert stats.mean == pytest.approx(2.5)


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    limit = AdaptiveLimit.fixed(1)
    await limit.acquire()
    first = asyncio.ensure_future(limit.acquire())
    second = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    limit.release()
    await asyncio.sleep(0)
    assert second.done() and limit.in_flight == 1
    # woken and cancelled at once: the slot is passed on, not lost
    third = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0)
    limit.release()  # hands the slot to `third`...
    third.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(third, return_exceptions=True)
    assert limit.in_flight == 0
    await asyncio.wait_for(limit.acquire(), 1)
    assert limit.stats().mode == "fixed" and limit.limit == 1
