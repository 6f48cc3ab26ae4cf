"""`RetryBudget`: retries as a share of recent calls, as Finagle and Envoy
budget them, so that retries cannot multiply the load on an upstream that
is failing.

Every call (a first attempt) is recorded with `record_call`; a retry goes
ahead only if `try_retry` says so: while the retries of the last
``window`` seconds stay below ``ratio`` times the calls of that window plus
``min_per_second`` per second of it (the floor that lets a quiet client
retry at all). When an upstream fails every call, the retries it receives
over a run of T seconds are then at most ``ratio`` times the calls plus
``min_per_second * (T + window)``, instead of ``attempts - 1`` times the
calls.

The two counts are ratefuse's own sliding-window limiters (read with cost
0, which consumes nothing), on the budget's clock: an approximate sliding
window, as Finagle's bucketed one is.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable

from ratefuse.limiter import Limiter
from ratefuse.rates import Rate

# The sliding windows' largest capacity: far above any count they hold,
# so that they only count. A rate may not pass one unit per ns, so a
# window shorter than this many ns counts up to its length in ns.
_COUNTER_CAPACITY = 1 << 40


class RetryBudget:
    """`RetryBudget` allows retries up to ``ratio`` (in [0, 1000]) of the
    calls of the last ``window`` seconds (> 0), plus ``min_per_second``
    (>= 0) retries per second of the window. ``clock`` returns ns (None:
    the monotonic clock). Thread-safe. ValueError naming the field for a
    bad value."""

    def __init__(
        self,
        ratio: float = 0.2,
        min_per_second: float = 10.0,
        window: float = 10.0,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        _check("ratio", ratio, 0.0, 1000.0)
        _check("min_per_second", min_per_second, 0.0, 1e9)
        _check("window", window, 0.0, 86_400.0)
        if window < 1e-6:
            raise ValueError(f"window must be at least 1e-6 seconds, got {window!r}")
        self._ratio = float(ratio)
        self._min_per_second = float(min_per_second)
        self._window = float(window)
        self._floor = self._min_per_second * self._window
        self._capacity = min(_COUNTER_CAPACITY, int(self._window * 1e9))
        count = Rate(self._capacity, self._window)
        self._calls = Limiter(count, algorithm="sliding_window", clock=clock)
        self._retries = Limiter(count, algorithm="sliding_window", clock=clock)
        self._lock = threading.Lock()

    @property
    def ratio(self) -> float:
        """`ratio` is the retries allowed per call of the window."""
        return self._ratio

    @property
    def min_per_second(self) -> float:
        """`min_per_second` is the retries allowed per second whatever the
        calls."""
        return self._min_per_second

    @property
    def window(self) -> float:
        """`window` is the seconds over which calls and retries count."""
        return self._window

    def record_call(self) -> None:
        """`record_call` counts a call (a first attempt, not a retry)."""
        self._calls.try_acquire()

    def try_retry(self) -> bool:
        """`try_retry` counts a retry and returns True if the budget allows
        one now; returns False (and counts nothing) otherwise."""
        with self._lock:
            if self.retries() + 1 > self.allowed():
                return False
            self._retries.try_acquire()
            return True

    def calls(self) -> int:
        """`calls` is the calls counted in the window now."""
        return self._capacity - self._calls.decide(0).remaining

    def retries(self) -> int:
        """`retries` is the retries counted in the window now."""
        return self._capacity - self._retries.decide(0).remaining

    def allowed(self) -> float:
        """`allowed` is the retries the window allows now, spent or not."""
        return self._ratio * self.calls() + self._floor

    def __repr__(self) -> str:
        return (
            f"<RetryBudget ratio={self._ratio:g} min_per_second="
            f"{self._min_per_second:g} window={self._window:g}s: "
            f"{self.retries()} of {self.allowed():g} retries spent>"
        )


def _check(field: str, value: object, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} must be a number, got {value!r}")
    if not (low <= value <= high and math.isfinite(value)):
        raise ValueError(f"{field} must be in [{low:g}, {high:g}], got {value!r}")
