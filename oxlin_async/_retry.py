"""Retry decisions, as pure functions of what happened: no I/O, no clock of their own.

The transport describes each failed attempt as an `Outcome` and asks `retry_delay` how
long to wait before the next one, or whether to give up. `parse_retry_after` reads the
``Retry-After`` header (RFC 9110 §10.2.3: seconds or an HTTP date).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random

import attrs

#: Methods that may be replayed without changing the result (RFC 9110 §9.2.2). PATCH is
#: not among them: a request that sets a status passes ``idempotent=True`` itself.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@attrs.frozen
class RetryPolicy:
    """When and how long to retry.

    Idempotent requests (GET, DELETE, the status PATCH, token requests) are retried on
    connection errors, timeouts, unreadable bodies and `statuses`; other requests (POST
    /users, a plain PATCH) only when they cannot have reached the server. A Retry-After
    above `max_retry_after` is not waited for: the error is raised at once.
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


@attrs.frozen
class Outcome:
    """How one attempt failed, as far as retrying goes.

    `status` is the HTTP status when an answer came (None for a timeout or a broken
    connection); `reached_server` is False only when the connection was refused, so the
    request cannot have had an effect; `undecodable` marks a 2xx whose body could not be
    decoded (truncated, say).
    """

    status: int | None = None
    reached_server: bool = True
    retry_after: float | None = None
    undecodable: bool = False

    @classmethod
    def answer(cls, status: int, retry_after: float | None = None) -> Outcome:
        return cls(status=status, retry_after=retry_after)

    @classmethod
    def no_answer(cls, *, reached_server: bool) -> Outcome:
        return cls(reached_server=reached_server)

    @classmethod
    def bad_body(cls, status: int) -> Outcome:
        return cls(status=status, undecodable=True)


def retry_delay(outcome: Outcome, policy: RetryPolicy, attempt: int, idempotent: bool,
                rng: random.Random) -> float | None:
    """Seconds to wait before retrying, or None to give up.

    `attempt` counts the retries already made (0 after the first failure).
    """
    if (outcome.status is not None and not outcome.undecodable
            and outcome.status not in policy.statuses):
        return None  # an answer that asking again would not change
    if attempt >= policy.max_retries:
        return None
    if outcome.reached_server and not idempotent:
        return None  # it may have had its effect: a replay could apply it twice
    if outcome.retry_after is not None:
        return outcome.retry_after if outcome.retry_after <= policy.max_retry_after else None
    return policy.backoff(attempt, rng)


def gate_delay(outcome: Outcome, policy: RetryPolicy) -> float | None:
    """How long a 429 closes the whole client, or None: only for a Retry-After we would
    wait for (one above the cap raises at once and must not stall everyone else)."""
    wait = outcome.retry_after
    if outcome.status == 429 and wait is not None and wait <= policy.max_retry_after:
        return wait
    return None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds from `now` (a POSIX timestamp), or None when absent or
    unreadable. A date in the past gives 0."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322's UTC with no stated offset
        when = when.replace(tzinfo=dt.timezone.utc)
    return max(0.0, when.timestamp() - now)
