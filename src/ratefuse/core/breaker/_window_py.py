"""The breaker's sliding window, reference implementation (spec of the C one).

`SlidingWindow` tallies the outcomes a CLOSED breaker decides on: calls,
failures and slow calls. Totals are kept beside the raw entries and updated
by subtracting what falls out, so recording and reading are O(1) (amortised
O(1) for the time-based window, at most ``size`` buckets per step).

- Count-based: the last ``size`` calls, one flags byte each in a ring.
- Time-based: ``size`` buckets of ``bucket_ns``; the bucket of time ``now``
  is ``now // bucket_ns`` and the window is the newest ``size`` buckets, so
  it spans between ``(size - 1) * bucket_ns`` and ``size * bucket_ns``.

Not thread-safe on its own: the breaker core serialises access.
"""

from __future__ import annotations

from typing import Final

FAILED_FLAG: Final = 1
SLOW_FLAG: Final = 2

# head_epoch of an empty time window: older than any bucket of a now >= 0.
EMPTY_EPOCH: Final = -1


class SlidingWindow:
    """`SlidingWindow` is a count-based window when ``bucket_ns`` is 0,
    otherwise a time-based window of ``size`` buckets of ``bucket_ns``.

    ``size`` must be >= 1 (the breaker config guarantees it).
    """

    __slots__ = (
        "bucket_calls",
        "bucket_failures",
        "bucket_ns",
        "bucket_slow",
        "calls",
        "failures",
        "filled",
        "flags",
        "head",
        "head_epoch",
        "size",
        "slow",
    )

    def __init__(self, size: int, bucket_ns: int) -> None:
        self.size = size
        self.bucket_ns = bucket_ns
        self.calls = 0
        self.failures = 0
        self.slow = 0
        # Count-based: the ring of flags, the next slot, how many are used.
        self.flags = bytearray(size if bucket_ns == 0 else 0)
        self.head = 0
        self.filled = 0
        # Time-based: bucket e lives in slot e % size while it is in the
        # window; head_epoch is the newest bucket seen.
        buckets = size if bucket_ns else 0
        self.bucket_calls = [0] * buckets
        self.bucket_failures = [0] * buckets
        self.bucket_slow = [0] * buckets
        self.head_epoch = EMPTY_EPOCH

    def clear(self) -> None:
        """`clear` empties the window."""
        self.calls = self.failures = self.slow = 0
        self.flags[:] = bytes(len(self.flags))
        self.head = self.filled = 0
        buckets = len(self.bucket_calls)
        self.bucket_calls[:] = [0] * buckets
        self.bucket_failures[:] = [0] * buckets
        self.bucket_slow[:] = [0] * buckets
        self.head_epoch = EMPTY_EPOCH

    def totals_after(self, failed: bool, slow: bool) -> tuple[int, int, int]:
        """`totals_after` is (calls, failures, slow) as they would be after
        recording one more call, without recording it. Count-based only."""
        calls, failures, slow_calls = self.calls, self.failures, self.slow
        if self.filled == self.size:
            evicted = self.flags[self.head]
            calls -= 1
            failures -= evicted & FAILED_FLAG
            slow_calls -= (evicted & SLOW_FLAG) >> 1
        return calls + 1, failures + failed, slow_calls + slow

    def record(self, failed: bool, slow: bool, now: int) -> None:
        """`record` adds one call; ``now`` (ns >= 0) matters only when
        time-based, and a ``now`` older than the newest bucket counts in it."""
        if self.bucket_ns:
            self.advance(now)
            slot = self.head_epoch % self.size
            self.bucket_calls[slot] += 1
            self.bucket_failures[slot] += failed
            self.bucket_slow[slot] += slow
        else:
            if self.filled == self.size:
                evicted = self.flags[self.head]
                self.calls -= 1
                self.failures -= evicted & FAILED_FLAG
                self.slow -= (evicted & SLOW_FLAG) >> 1
            else:
                self.filled += 1
            self.flags[self.head] = (FAILED_FLAG if failed else 0) | (
                SLOW_FLAG if slow else 0
            )
            self.head = (self.head + 1) % self.size
        self.calls += 1
        self.failures += failed
        self.slow += slow

    def advance(self, now: int) -> None:
        """`advance` evicts the buckets that ``now`` (ns >= 0) has left
        behind; a no-op for a count-based window or a ``now`` in the past."""
        if not self.bucket_ns:
            return
        epoch = now // self.bucket_ns
        if epoch <= self.head_epoch:
            return
        # Slots of epochs head+1..epoch hold buckets that are now out of the
        # window; there are at most `size` distinct ones.
        first = max(self.head_epoch + 1, epoch - self.size + 1)
        for stale in range(first, epoch + 1):
            slot = stale % self.size
            self.calls -= self.bucket_calls[slot]
            self.failures -= self.bucket_failures[slot]
            self.slow -= self.bucket_slow[slot]
            self.bucket_calls[slot] = 0
            self.bucket_failures[slot] = 0
            self.bucket_slow[slot] = 0
        self.head_epoch = epoch
