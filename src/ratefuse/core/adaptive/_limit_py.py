"""The adaptive concurrency limit, reference implementation: the spec of
``_limit_c``.

`AdaptiveCore` holds a concurrency limit and the calls in flight under it.
A call is admitted while fewer than ``limit`` run (and nobody is queued);
when it finishes, its round-trip time (and whether it was dropped: an
error or a timeout) is a sample, and the algorithm's step moves the limit:

- AIMD grows by one call per round trip while the limit is in use, and
  multiplies by ``backoff`` on a drop or a call slower than ``timeout``.
- Vegas estimates the queue at the server as ``limit * (1 - no_load /
  smoothed)`` (``no_load``: the least smoothed time seen) and grows by one
  call per round trip while it is below ``alpha``, shrinks while it is
  above ``beta``.
- Gradient2 compares the smoothed time with its long-term average: the
  limit moves toward ``limit * clamp(tolerance * long / smoothed, 0.5, 1)
  + queue`` by ``smoothing`` per round trip; the long-term average decays
  when it is far above the present.

A round trip is taken as a limit's worth of samples, so the limit moves at
the same pace per round trip whatever the request rate (a step per sample
would overshoot by the calls in flight before their latency shows). A
drop backs off once, then drops are not answered again for a limit's
worth of samples (the calls of the same round trip), as TCP halves once
per window. A limit less than half used does not grow (no evidence).
The smoothed time moves 1/8 of the way to each sample, as TCP's.
Times are integer nanoseconds; all arithmetic is on non-negative integers
(see :mod:`.params`), so both twins decide identically.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ratefuse.core.adaptive.params import (
    LIMIT_SCALE,
    MAX_RTT_NS,
    MILLI,
    SMOOTHING_DIVISOR,
    AdaptiveParams,
    AlgorithmId,
)

# Gradient2's long-term average decays by this factor (in thousandths) on a
# sample whose smoothed time is less than half of it: the server recovered.
LONG_RTT_DECAY_MILLI = 950


class AdaptivePermit:
    """`AdaptivePermit` is one admitted call's slot: `release` it when the
    call succeeds, `drop` it when it fails or times out, `ignore` it when
    its time says nothing about the server (a client-side error). Each
    returns the slot once; a second call raises RuntimeError."""

    __slots__ = ("_core", "_open", "start_ns")

    def __init__(self, core: AdaptiveCore, start_ns: int) -> None:
        self._core = core
        self._open = True
        self.start_ns = start_ns

    def _close(self) -> AdaptiveCore:
        if not self._open:
            raise RuntimeError("adaptive permit already returned")
        self._open = False
        return self._core

    def release(self) -> None:
        """`release` returns the slot and feeds the call's time as a success."""
        self.release_at(self._core.now_ns())

    def release_at(self, now_ns: int) -> None:
        """`release_at` is `release` at ``now_ns`` (the permit's clock)."""
        self._close().complete(now_ns - self.start_ns, False)

    def drop(self) -> None:
        """`drop` returns the slot and feeds the call as a drop."""
        self.drop_at(self._core.now_ns())

    def drop_at(self, now_ns: int) -> None:
        """`drop_at` is `drop` at ``now_ns`` (the permit's clock)."""
        self._close().complete(now_ns - self.start_ns, True)

    def ignore(self) -> None:
        """`ignore` returns the slot without feeding a sample."""
        self._close().forget()

    @property
    def returned(self) -> bool:
        """`returned` says whether the slot was returned."""
        return not self._open


class AdaptiveCore:
    """`AdaptiveCore` is an adaptive concurrency limit over ``params``.

    ``clock`` returns integer nanoseconds (None: the monotonic clock, read in
    C by the compiled twin); it times permits. ``on_free`` (None: nothing)
    is called, outside any lock, after a slot is freed while callers wait:
    the facade hands the slot (or a grown limit's slots) to them.
    `try_acquire` (its clock) and `try_acquire_at` (an injected one) give a
    permit or None; `admit`/`complete`/`forget` are the same
    steps without permits, for traces and simulations. ``waiting`` counts
    callers queued by a facade: while any wait, `admit` refuses newcomers
    and only `grant` (the hand-off to a waiter) takes a slot. Thread-safe.
    """

    __slots__ = (
        "_clock",
        "_lock",
        "_on_free",
        "cooldown",
        "drops",
        "in_flight",
        "last_rtt_ns",
        "limit_micro",
        "long_rtt_ns",
        "min_rtt_ns",
        "params",
        "samples",
        "smoothed_rtt_ns",
        "waiting",
    )

    def __init__(
        self,
        params: AdaptiveParams,
        clock: Callable[[], int] | None = None,
        on_free: Callable[[], None] | None = None,
    ) -> None:
        if not isinstance(params, AdaptiveParams):
            raise TypeError(f"params must be AdaptiveParams, got {params!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be callable or None, got {clock!r}")
        self._clock = time.monotonic_ns if clock is None else clock
        self._on_free = on_free
        self.params = params
        self.limit_micro = params.initial_limit * LIMIT_SCALE
        self.in_flight = 0
        self.waiting = 0
        self.cooldown = 0
        self.min_rtt_ns = 0
        self.smoothed_rtt_ns = 0
        self.long_rtt_ns = 0
        self.last_rtt_ns = 0
        self.samples = 0
        self.drops = 0
        self._lock = threading.Lock()

    def now_ns(self) -> int:
        """`now_ns` reads the core's clock."""
        return self._clock()

    @property
    def limit(self) -> int:
        """`limit` is the number of calls admitted at once now."""
        return self.limit_micro // LIMIT_SCALE

    def admit(self) -> bool:
        """`admit` takes a slot if one is free and nobody waits."""
        with self._lock:
            if self.waiting == 0 and self.in_flight < self.limit_micro // LIMIT_SCALE:
                self.in_flight += 1
                return True
            return False

    def grant(self) -> bool:
        """`grant` takes a slot if one is free, for a queued caller."""
        with self._lock:
            if self.in_flight < self.limit_micro // LIMIT_SCALE:
                self.in_flight += 1
                return True
            return False

    def try_acquire(self) -> AdaptivePermit | None:
        """`try_acquire` is `admit` with a permit timed by the core's clock."""
        return self.try_acquire_at(self._clock())

    def try_acquire_at(self, now_ns: int) -> AdaptivePermit | None:
        """`try_acquire_at` is `admit` with a permit started at ``now_ns``."""
        if self.admit():
            return AdaptivePermit(self, now_ns)
        return None

    def grant_at(self, now_ns: int) -> AdaptivePermit | None:
        """`grant_at` is `grant` with a permit started at ``now_ns``."""
        if self.grant():
            return AdaptivePermit(self, now_ns)
        return None

    def enqueue(self) -> None:
        """`enqueue` counts one more queued caller."""
        with self._lock:
            self.waiting += 1

    def dequeue(self) -> None:
        """`dequeue` counts one queued caller fewer."""
        with self._lock:
            if self.waiting == 0:
                raise RuntimeError("adaptive limit: dequeue with nobody queued")
            self.waiting -= 1

    def forget(self) -> None:
        """`forget` frees a slot without a sample."""
        with self._lock:
            if self.in_flight == 0:
                raise RuntimeError("adaptive limit released too many times")
            self.in_flight -= 1
            notify = self.waiting != 0
        if notify and self._on_free is not None:
            self._on_free()

    def complete(self, rtt_ns: int, dropped: bool) -> None:
        """`complete` frees a slot and feeds its call's round-trip time
        ``rtt_ns`` (clamped to [1, MAX_RTT_NS]) and whether it was dropped."""
        with self._lock:
            in_flight = self.in_flight
            if in_flight == 0:
                raise RuntimeError("adaptive limit released too many times")
            self.in_flight = in_flight - 1
            rtt = min(max(rtt_ns, 1), MAX_RTT_NS)
            self._sample(in_flight, rtt, bool(dropped))
            notify = self.waiting != 0
        if notify and self._on_free is not None:
            self._on_free()

    def _sample(self, in_flight: int, rtt: int, dropped: bool) -> None:
        # Precondition: the lock is held; `in_flight` counts this call.
        params = self.params
        algorithm = params.algorithm
        self.samples += 1
        if dropped:
            self.drops += 1
        self.last_rtt_ns = rtt
        smoothed = self.smoothed_rtt_ns
        if smoothed == 0:
            smoothed = rtt
        elif rtt >= smoothed:
            smoothed += (rtt - smoothed) // SMOOTHING_DIVISOR
        else:
            smoothed -= (smoothed - rtt) // SMOOTHING_DIVISOR
        self.smoothed_rtt_ns = smoothed
        # The no-load time is the least smoothed time: the least raw sample
        # would be a lucky outlier, and Vegas would see a queue that is not.
        if self.min_rtt_ns == 0 or smoothed < self.min_rtt_ns:
            self.min_rtt_ns = smoothed
        if algorithm == AlgorithmId.GRADIENT2:
            self._track_long_rtt(rtt)
        elif (
            algorithm == AlgorithmId.VEGAS
            and params.probe_every != 0
            and self.samples % params.probe_every == 0
        ):
            # Forget the no-load time: the server may have slowed down.
            self.min_rtt_ns = smoothed
            return
        if algorithm == AlgorithmId.AIMD and params.timeout_ns != 0:
            dropped = dropped or rtt > params.timeout_ns
        if self.cooldown != 0:
            self.cooldown -= 1
            if dropped:
                # This round trip's drops were answered by one backoff.
                return
        limit = self.limit_micro // LIMIT_SCALE
        if dropped:
            limit_micro = self.limit_micro * params.backoff_milli // MILLI
            self.cooldown = limit
        elif in_flight * 2 < limit:
            # Less than half used: no evidence that more would be served.
            return
        elif algorithm == AlgorithmId.AIMD:
            limit_micro = self.limit_micro + self._per_round_trip()
        elif algorithm == AlgorithmId.VEGAS:
            limit_micro = self._vegas()
        else:
            limit_micro = self._gradient2(limit)
        low = params.min_limit * LIMIT_SCALE
        high = params.max_limit * LIMIT_SCALE
        self.limit_micro = min(max(limit_micro, low), high)

    def _per_round_trip(self) -> int:
        # One call per round trip: a limit's worth of samples is about one
        # round trip, so each sample moves the limit by 1/limit of a call.
        return LIMIT_SCALE * LIMIT_SCALE // self.limit_micro

    def _vegas(self) -> int:
        params = self.params
        smoothed = self.smoothed_rtt_ns
        queued_share_milli = (smoothed - self.min_rtt_ns) * MILLI // smoothed
        queue_micro = self.limit_micro * queued_share_milli // MILLI
        if queue_micro < params.alpha * LIMIT_SCALE:
            return self.limit_micro + self._per_round_trip()
        if queue_micro > params.beta * LIMIT_SCALE:
            return self.limit_micro - self._per_round_trip()
        return self.limit_micro

    def _track_long_rtt(self, rtt: int) -> None:
        # The long-term average spans `long_window` round trips (of a
        # limit's worth of samples each): counted in samples, it would
        # follow a queue as fast as the limit builds one, and the limit
        # would drift up with it.
        long_rtt = self.long_rtt_ns
        window = self.params.long_window * max(1, self.limit_micro // LIMIT_SCALE)
        if long_rtt == 0:
            long_rtt = rtt
        elif rtt >= long_rtt:
            long_rtt += (rtt - long_rtt) // window
        else:
            long_rtt -= (long_rtt - rtt) // window
        if long_rtt > 2 * self.smoothed_rtt_ns:
            # Far above the present: the server recovered, forget faster.
            long_rtt = long_rtt * LONG_RTT_DECAY_MILLI // MILLI
        self.long_rtt_ns = long_rtt

    def _gradient2(self, limit: int) -> int:
        # Moves toward the estimate by `smoothing` per round trip (per limit
        # samples), so the gain does not grow with the request rate.
        params = self.params
        gradient_milli = (
            params.tolerance_milli * self.long_rtt_ns // self.smoothed_rtt_ns
        )
        gradient_milli = min(max(gradient_milli, MILLI // 2), MILLI)
        estimate = (
            self.limit_micro * gradient_milli // MILLI + params.queue_size * LIMIT_SCALE
        )
        smoothing = params.smoothing_milli
        if estimate >= self.limit_micro:
            return (
                self.limit_micro
                + (estimate - self.limit_micro) * smoothing // MILLI // limit
            )
        return (
            self.limit_micro
            - (self.limit_micro - estimate) * smoothing // MILLI // limit
        )
