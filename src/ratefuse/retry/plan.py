"""The retry planner: how long to wait after a failed attempt, or not to.

One function, `next_wait`, answers for the built-in `ratefuse.retry.retry`
decorator and for the tenacity strategies (`ratefuse.retry.tenacity`):

- an error that says when to come back (``retry_after``: a rate limit's
  wait, an open breaker's time to its probe) is waited that long, plus a
  jitter of up to ``jitter`` times as long (never less: sooner would be
  refused again), so that the callers it refused do not all return at once;
- an error that cannot say (``retry_after`` None: a full bulkhead, a call
  timeout, a backend failure) waits the fallback backoff;
- no wait at all when it cannot help: a ``retry_after`` of ``inf`` (the
  cost can never be admitted), a DeadlineExceeded, or a wait that does not
  fit the time left before the running call's deadline.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ratefuse.core.errors import (
    BackendError,
    BulkheadFullError,
    CallTimeout,
    CircuitOpenError,
    DeadlineExceeded,
    RateLimitExceeded,
)
from ratefuse.engine.deadline import remaining

# What is worth retrying by default: the refusals that end (a rate limit,
# an open breaker, a full bulkhead), a call that timed out, a backend that
# failed. DeadlineExceeded is not: the time is gone.
RETRIABLE: Final[tuple[type[BaseException], ...]] = (
    RateLimitExceeded,
    CircuitOpenError,
    BulkheadFullError,
    CallTimeout,
    BackendError,
)

DEFAULT_JITTER: Final = 0.1


@dataclass(frozen=True)
class Backoff:
    """`Backoff` is the wait after an error that does not say when to come
    back: ``initial`` seconds after the first attempt, times ``multiplier``
    after each further one, at most ``maximum``. ValueError naming the field
    for a negative, NaN or infinite value (and a multiplier below 1)."""

    initial: float = 0.1
    multiplier: float = 2.0
    maximum: float = 10.0

    def __post_init__(self) -> None:
        for field in ("initial", "multiplier", "maximum"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{field} must be a number, got {value!r}")
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{field} must be finite and >= 0, got {value!r}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")

    def __call__(self, attempt: int) -> float:
        """`__call__` is the wait after failed attempt number ``attempt``
        (1 for the first)."""
        grown = self.initial * self.multiplier ** max(attempt - 1, 0)
        return min(grown, self.maximum)


def check_jitter(jitter: object) -> float:
    """`check_jitter` is ``jitter`` as a float in [0, 1]; ValueError otherwise."""
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)):
        raise ValueError(f"jitter must be a number in [0, 1], got {jitter!r}")
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter must be in [0, 1], got {jitter!r}")
    return float(jitter)


def retry_after_of(error: BaseException | None) -> float | None:
    """`retry_after_of` is ``error``'s ``retry_after`` when it is a number
    of seconds >= 0 (``inf`` included), else None."""
    seconds = getattr(error, "retry_after", None)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return None
    return float(seconds) if seconds >= 0 else None  # NaN >= 0 is false


def next_wait(
    error: BaseException | None,
    fallback: float,
    jitter: float,
    rng: Callable[[], float],
) -> float | None:
    """`next_wait` is the seconds to wait before retrying after ``error``,
    or None when retrying cannot help (see the module). ``fallback`` is the
    wait for an error without retry_after; ``rng()`` a number in [0, 1)."""
    if isinstance(error, DeadlineExceeded):
        return None
    retry_after = retry_after_of(error)
    if retry_after is None:
        wait = fallback
    elif math.isinf(retry_after):
        return None
    else:
        wait = retry_after * (1.0 + jitter * rng())
    left = remaining()
    if left is None:
        return wait
    if retry_after is not None:
        # The jitter may be cut to fit; the retry_after itself may not.
        return None if retry_after > left else min(wait, left)
    return None if wait > left else wait
