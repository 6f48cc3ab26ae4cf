# The adaptive concurrency limit, compiled. The spec is
# src/ratefuse/core/adaptive/_limit_py.py: same names, signatures, errors and
# decisions. Every step runs without Python code, so under the GIL it is
# atomic without a lock; the limit is kept in thousandths of a call and all
# arithmetic is on non-negative int64 (see params.py for the bounds that
# keep the products below 2**63).
from libc.stdint cimport int64_t

from ratefuse.core._clock cimport monotonic_ns

from ratefuse.core.adaptive.params import LIMIT_SCALE as _LIMIT_SCALE
from ratefuse.core.adaptive.params import MAX_RTT_NS as _MAX_RTT_NS
from ratefuse.core.adaptive.params import MILLI as _MILLI
from ratefuse.core.adaptive.params import (
    SMOOTHING_DIVISOR as _SMOOTHING_DIVISOR,
)
from ratefuse.core.adaptive.params import AdaptiveParams, AlgorithmId

LONG_RTT_DECAY_MILLI = 950

cdef int64_t C_MILLI = _MILLI
cdef int64_t C_LIMIT_SCALE = _LIMIT_SCALE
cdef int64_t C_MAX_RTT_NS = _MAX_RTT_NS
cdef int64_t C_SMOOTHING = _SMOOTHING_DIVISOR
cdef int64_t C_DECAY_MILLI = 950
cdef int C_AIMD = AlgorithmId.AIMD
cdef int C_VEGAS = AlgorithmId.VEGAS
cdef int C_GRADIENT2 = AlgorithmId.GRADIENT2


cdef class AdaptivePermit:
    """`AdaptivePermit` is one admitted call's slot: `release` it when the
    call succeeds, `drop` it when it fails or times out, `ignore` it when
    its time says nothing about the server (a client-side error). Each
    returns the slot once; a second call raises RuntimeError."""

    cdef AdaptiveCore _core
    cdef bint _open
    cdef readonly int64_t start_ns

    def __init__(self, AdaptiveCore core, int64_t start_ns):
        self._core = core
        self._open = True
        self.start_ns = start_ns

    cdef inline AdaptiveCore _close(self):
        if not self._open:
            raise RuntimeError("adaptive permit already returned")
        self._open = False
        return self._core

    def release(self):
        """`release` returns the slot and feeds the call's time as a success."""
        cdef int64_t now_ns = self._core.now_c()
        self._close().complete_c(now_ns - self.start_ns, False)

    def release_at(self, int64_t now_ns):
        """`release_at` is `release` at ``now_ns`` (the permit's clock)."""
        self._close().complete_c(now_ns - self.start_ns, False)

    def drop(self):
        """`drop` returns the slot and feeds the call as a drop."""
        cdef int64_t now_ns = self._core.now_c()
        self._close().complete_c(now_ns - self.start_ns, True)

    def drop_at(self, int64_t now_ns):
        """`drop_at` is `drop` at ``now_ns`` (the permit's clock)."""
        self._close().complete_c(now_ns - self.start_ns, True)

    def ignore(self):
        """`ignore` returns the slot without feeding a sample."""
        self._close().forget()

    @property
    def returned(self):
        """`returned` says whether the slot was returned."""
        return not self._open


cdef inline AdaptivePermit _new_permit(AdaptiveCore core, int64_t start_ns):
    cdef AdaptivePermit permit = AdaptivePermit.__new__(AdaptivePermit)
    permit._core = core
    permit._open = True
    permit.start_ns = start_ns
    return permit


cdef class AdaptiveCore:
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

    cdef readonly object params
    cdef object _clock
    cdef object _on_free
    cdef readonly int64_t limit_micro
    cdef readonly int64_t in_flight
    cdef readonly int64_t waiting
    cdef readonly int64_t cooldown
    cdef readonly int64_t min_rtt_ns
    cdef readonly int64_t smoothed_rtt_ns
    cdef readonly int64_t long_rtt_ns
    cdef readonly int64_t last_rtt_ns
    cdef readonly int64_t samples
    cdef readonly int64_t drops
    cdef int _algorithm
    cdef int64_t _min_micro
    cdef int64_t _max_micro
    cdef int64_t _backoff_milli
    cdef int64_t _timeout_ns
    cdef int64_t _alpha_micro
    cdef int64_t _beta_micro
    cdef int64_t _probe_every
    cdef int64_t _tolerance_milli
    cdef int64_t _smoothing_milli
    cdef int64_t _long_window
    cdef int64_t _queue_micro

    def __init__(self, params, clock=None, on_free=None):
        if not isinstance(params, AdaptiveParams):
            raise TypeError(f"params must be AdaptiveParams, got {params!r}")
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be callable or None, got {clock!r}")
        self._clock = clock
        self._on_free = on_free
        self.params = params
        self._algorithm = params.algorithm
        self._min_micro = params.min_limit * C_LIMIT_SCALE
        self._max_micro = params.max_limit * C_LIMIT_SCALE
        self._backoff_milli = params.backoff_milli
        self._timeout_ns = params.timeout_ns
        self._alpha_micro = params.alpha * C_LIMIT_SCALE
        self._beta_micro = params.beta * C_LIMIT_SCALE
        self._probe_every = params.probe_every
        self._tolerance_milli = params.tolerance_milli
        self._smoothing_milli = params.smoothing_milli
        self._long_window = params.long_window
        self._queue_micro = params.queue_size * C_LIMIT_SCALE
        self.limit_micro = params.initial_limit * C_LIMIT_SCALE
        self.in_flight = 0
        self.waiting = 0
        self.cooldown = 0
        self.min_rtt_ns = 0
        self.smoothed_rtt_ns = 0
        self.long_rtt_ns = 0
        self.last_rtt_ns = 0
        self.samples = 0
        self.drops = 0

    cdef inline int64_t now_c(self) except? -1:
        if self._clock is None:
            return monotonic_ns()
        return self._clock()

    def now_ns(self):
        """`now_ns` reads the core's clock."""
        return self.now_c()

    @property
    def limit(self):
        """`limit` is the number of calls admitted at once now."""
        return self.limit_micro // C_LIMIT_SCALE

    def admit(self):
        """`admit` takes a slot if one is free and nobody waits."""
        if self.waiting == 0 and self.in_flight < self.limit_micro // C_LIMIT_SCALE:
            self.in_flight += 1
            return True
        return False

    def grant(self):
        """`grant` takes a slot if one is free, for a queued caller."""
        if self.in_flight < self.limit_micro // C_LIMIT_SCALE:
            self.in_flight += 1
            return True
        return False

    def try_acquire(self):
        """`try_acquire` is `admit` with a permit timed by the core's clock."""
        # The clock is read first: an injected clock is Python code, and the
        # check and the increment that follow must not be split by it.
        cdef int64_t now_ns = self.now_c()
        if self.waiting == 0 and self.in_flight < self.limit_micro // C_LIMIT_SCALE:
            self.in_flight += 1
            return _new_permit(self, now_ns)
        return None

    def try_acquire_at(self, int64_t now_ns):
        """`try_acquire_at` is `admit` with a permit started at ``now_ns``."""
        if self.waiting == 0 and self.in_flight < self.limit_micro // C_LIMIT_SCALE:
            self.in_flight += 1
            return _new_permit(self, now_ns)
        return None

    def grant_at(self, int64_t now_ns):
        """`grant_at` is `grant` with a permit started at ``now_ns``."""
        if self.in_flight < self.limit_micro // C_LIMIT_SCALE:
            self.in_flight += 1
            return _new_permit(self, now_ns)
        return None

    def enqueue(self):
        """`enqueue` counts one more queued caller."""
        self.waiting += 1

    def dequeue(self):
        """`dequeue` counts one queued caller fewer."""
        if self.waiting == 0:
            raise RuntimeError("adaptive limit: dequeue with nobody queued")
        self.waiting -= 1

    def forget(self):
        """`forget` frees a slot without a sample."""
        if self.in_flight == 0:
            raise RuntimeError("adaptive limit released too many times")
        self.in_flight -= 1
        if self.waiting != 0 and self._on_free is not None:
            self._on_free()

    def complete(self, int64_t rtt_ns, bint dropped):
        """`complete` frees a slot and feeds its call's round-trip time
        ``rtt_ns`` (clamped to [1, MAX_RTT_NS]) and whether it was dropped."""
        self.complete_c(rtt_ns, dropped)

    cdef int complete_c(self, int64_t rtt_ns, bint dropped) except -1:
        cdef int64_t in_flight = self.in_flight
        if in_flight == 0:
            raise RuntimeError("adaptive limit released too many times")
        self.in_flight = in_flight - 1
        if rtt_ns < 1:
            rtt_ns = 1
        elif rtt_ns > C_MAX_RTT_NS:
            rtt_ns = C_MAX_RTT_NS
        self._sample(in_flight, rtt_ns, dropped)
        if self.waiting != 0 and self._on_free is not None:
            self._on_free()
        return 0

    cdef void _sample(self, int64_t in_flight, int64_t rtt, bint dropped) noexcept:
        # `in_flight` counts this call.
        cdef int64_t limit_micro
        cdef int64_t limit
        cdef int64_t smoothed = self.smoothed_rtt_ns
        self.samples += 1
        if dropped:
            self.drops += 1
        self.last_rtt_ns = rtt
        if smoothed == 0:
            smoothed = rtt
        elif rtt >= smoothed:
            smoothed += (rtt - smoothed) // C_SMOOTHING
        else:
            smoothed -= (smoothed - rtt) // C_SMOOTHING
        self.smoothed_rtt_ns = smoothed
        # The no-load time is the least smoothed time: the least raw sample
        # would be a lucky outlier, and Vegas would see a queue that is not.
        if self.min_rtt_ns == 0 or smoothed < self.min_rtt_ns:
            self.min_rtt_ns = smoothed
        if self._algorithm == C_GRADIENT2:
            self._track_long_rtt(rtt)
        elif (
            self._algorithm == C_VEGAS
            and self._probe_every != 0
            and self.samples % self._probe_every == 0
        ):
            # Forget the no-load time: the server may have slowed down.
            self.min_rtt_ns = smoothed
            return
        if self._algorithm == C_AIMD and self._timeout_ns != 0:
            dropped = dropped or rtt > self._timeout_ns
        if self.cooldown != 0:
            self.cooldown -= 1
            if dropped:
                # This round trip's drops were answered by one backoff.
                return
        limit = self.limit_micro // C_LIMIT_SCALE
        if dropped:
            limit_micro = self.limit_micro * self._backoff_milli // C_MILLI
            self.cooldown = limit
        elif in_flight * 2 < limit:
            # Less than half used: no evidence that more would be served.
            return
        elif self._algorithm == C_AIMD:
            limit_micro = self.limit_micro + self._per_round_trip()
        elif self._algorithm == C_VEGAS:
            limit_micro = self._vegas()
        else:
            limit_micro = self._gradient2(limit)
        if limit_micro < self._min_micro:
            limit_micro = self._min_micro
        if limit_micro > self._max_micro:
            limit_micro = self._max_micro
        self.limit_micro = limit_micro

    cdef inline int64_t _per_round_trip(self) noexcept:
        # One call per round trip: a limit's worth of samples is about one
        # round trip, so each sample moves the limit by 1/limit of a call.
        return C_LIMIT_SCALE * C_LIMIT_SCALE // self.limit_micro

    cdef inline int64_t _vegas(self) noexcept:
        cdef int64_t smoothed = self.smoothed_rtt_ns
        cdef int64_t queued_share_milli = (
            (smoothed - self.min_rtt_ns) * C_MILLI // smoothed
        )
        cdef int64_t queue_micro = self.limit_micro * queued_share_milli // C_MILLI
        if queue_micro < self._alpha_micro:
            return self.limit_micro + self._per_round_trip()
        if queue_micro > self._beta_micro:
            return self.limit_micro - self._per_round_trip()
        return self.limit_micro

    cdef inline void _track_long_rtt(self, int64_t rtt) noexcept:
        # The long-term average spans `long_window` round trips (of a
        # limit's worth of samples each): counted in samples, it would
        # follow a queue as fast as the limit builds one, and the limit
        # would drift up with it.
        cdef int64_t long_rtt = self.long_rtt_ns
        cdef int64_t window = self._long_window * max(
            1, self.limit_micro // C_LIMIT_SCALE
        )
        if long_rtt == 0:
            long_rtt = rtt
        elif rtt >= long_rtt:
            long_rtt += (rtt - long_rtt) // window
        else:
            long_rtt -= (long_rtt - rtt) // window
        if long_rtt > 2 * self.smoothed_rtt_ns:
            # Far above the present: the server recovered, forget faster.
            long_rtt = long_rtt * C_DECAY_MILLI // C_MILLI
        self.long_rtt_ns = long_rtt

    cdef inline int64_t _gradient2(self, int64_t limit) noexcept:
        # Moves toward the estimate by `smoothing` per round trip (per limit
        # samples), so the gain does not grow with the request rate.
        cdef int64_t gradient_milli = (
            self._tolerance_milli * self.long_rtt_ns // self.smoothed_rtt_ns
        )
        cdef int64_t estimate
        if gradient_milli < C_MILLI // 2:
            gradient_milli = C_MILLI // 2
        if gradient_milli > C_MILLI:
            gradient_milli = C_MILLI
        cdef int64_t smoothing = self._smoothing_milli
        estimate = self.limit_micro * gradient_milli // C_MILLI + self._queue_micro
        if estimate >= self.limit_micro:
            return self.limit_micro + (
                (estimate - self.limit_micro) * smoothing // C_MILLI // limit
            )
        return self.limit_micro - (
            (self.limit_micro - estimate) * smoothing // C_MILLI // limit
        )
