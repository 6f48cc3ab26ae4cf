"""Client-side adaptive throttling, reference implementation (spec of the
compiled one, ``ext/ratefuse/core/_throttle_c.pyx``).

`ThrottleCore` keeps the requests and accepts of the last window in the
breaker's time-based `SlidingWindow` (a request recorded as "failed" is one
the upstream did not accept, or one refused locally), and decides with the
formula of the Google SRE book, chapter 21: refuse locally with probability
``max(0, (requests - K * accepts) / (requests + 1))``.

All arithmetic is on integers so that both twins decide alike: ``K`` is in
thousandths (``k_milli``) and the caller's random draw is an integer in
``[0, DRAW_RANGE)``; the request is refused iff
``draw * (requests + 1) * 1000 < (1000 * requests - k_milli * accepts) *
DRAW_RANGE``, that is iff ``draw / DRAW_RANGE`` is below the probability.
Requests count when their outcome is known (`record`) or when they are
refused locally (`decide`); requests in flight do not count yet.
Thread-safe: one lock per core (the compiled twin relies on the GIL).
"""

from __future__ import annotations

import threading
from typing import Final

from ratefuse.core.breaker._window_py import SlidingWindow

# Random draws are integers in [0, DRAW_RANGE): a probability resolution of
# about 1e-6, and products that stay far inside int64 for any window of
# fewer than 2**33 requests.
DRAW_BITS: Final = 20
DRAW_RANGE: Final = 1 << DRAW_BITS
MILLI: Final = 1000


class ThrottleCore:
    """`ThrottleCore` decides client-side throttling over a time window of
    ``buckets`` (>= 1) buckets of ``bucket_ns`` (>= 1) ns each, with
    ``K = k_milli / 1000`` (``k_milli`` >= 1000). Times are integer ns on
    one clock; the caller checks the arguments (`ThrottleConfig`)."""

    __slots__ = (
        "_lock",
        "_window",
        "accepted",
        "admitted",
        "k_milli",
        "refused",
        "rejected",
    )

    def __init__(self, buckets: int, bucket_ns: int, k_milli: int) -> None:
        self._window = SlidingWindow(buckets, bucket_ns)
        self._lock = threading.Lock()
        self.k_milli = k_milli
        self.admitted = 0  # decide let it go
        self.rejected = 0  # decide refused it locally
        self.accepted = 0  # record: the upstream accepted it
        self.refused = 0  # record: the upstream did not accept it

    def decide(self, now: int, draw: int) -> bool:
        """`decide` reports whether a request may go to the upstream at
        ``now`` given a uniform ``draw`` in [0, DRAW_RANGE); a refusal is
        recorded as a request that was not accepted."""
        with self._lock:
            window = self._window
            window.advance(now)
            requests = window.calls
            excess = MILLI * requests - self.k_milli * (requests - window.failures)
            if excess > 0 and draw * (requests + 1) * MILLI < excess * DRAW_RANGE:
                window.record(True, False, now)
                self.rejected += 1
                return False
            self.admitted += 1
            return True

    def record(self, accepted: bool, now: int) -> None:
        """`record` counts the outcome of a request `decide` let go."""
        with self._lock:
            self._window.record(not accepted, False, now)
            if accepted:
                self.accepted += 1
            else:
                self.refused += 1

    def totals(self, now: int) -> tuple[int, int]:
        """`totals` is (requests, accepts) in the window at ``now``."""
        with self._lock:
            window = self._window
            window.advance(now)
            return window.calls, window.calls - window.failures

    def counters(self) -> tuple[int, int, int, int]:
        """`counters` is (admitted, rejected, accepted, refused) since
        construction."""
        with self._lock:
            return self.admitted, self.rejected, self.accepted, self.refused

    def clear(self) -> None:
        """`clear` empties the window (the counters keep growing)."""
        with self._lock:
            self._window.clear()
