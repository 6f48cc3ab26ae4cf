# The fleet breaker's outcome recorder, compiled. The spec is
# src/ratefuse/core/breaker/_fleet_recorder_py.py: same names, signatures, errors and
# buffering. Buffering an outcome is C that runs no Python code (but the
# flusher's wake-up when a batch is full, or a probe's outcome), so under
# the GIL it is atomic without a lock.
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc

from ratefuse.core._args cimport duration_to_ns

from ratefuse.core.breaker.spec import FAILURE as _FAILURE
from ratefuse.core.breaker.spec import IGNORED as _IGNORED

FAILED_BIT = 1
SLOW_BIT = 2
IGNORED_BIT = 4

cdef int C_FAILED_BIT = 1
cdef int C_SLOW_BIT = 2
cdef int C_IGNORED_BIT = 4
cdef int C_FAILURE = _FAILURE
cdef int C_IGNORED = _IGNORED


cdef class Recorder:
    """`Recorder` buffers the outcomes of the calls permitted in its current
    ``generation`` until `take`.

    ``capacity`` (>= 1) bounds the buffer: outcomes beyond it are dropped and
    counted in ``dropped``; outcomes of another generation are dropped and
    counted in ``stale``. ``wake()`` is called when the buffer reaches
    ``batch_size`` (>= 1) outcomes. ``slow_call_ns`` (0: off) is the
    duration beyond which a call is slow. Thread-safe.
    """

    cdef unsigned char* _buffer
    cdef Py_ssize_t _length
    cdef object _wake
    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t batch_size
    cdef readonly int64_t slow_call_ns
    cdef readonly int64_t generation
    cdef readonly int64_t dropped
    cdef readonly int64_t stale

    def __init__(self, Py_ssize_t capacity, Py_ssize_t batch_size,
                 int64_t slow_call_ns, wake):
        if capacity < 1 or batch_size < 1:
            raise ValueError(
                "capacity and batch_size must be >= 1, got "
                f"{capacity}, {batch_size}"
            )
        if self._buffer != NULL:
            raise RuntimeError("a Recorder is initialised once")
        self._buffer = <unsigned char*>malloc(capacity)
        if self._buffer == NULL:
            raise MemoryError()
        self._wake = wake
        self.capacity = capacity
        self.batch_size = batch_size
        self.slow_call_ns = slow_call_ns

    def __dealloc__(self):
        free(self._buffer)

    cdef int push_c(self, int64_t generation, int flags) except -1:
        if generation != self.generation:
            self.stale += 1
            return 0
        if self._length >= self.capacity:
            self.dropped += 1
            return 0
        self._buffer[self._length] = <unsigned char>flags
        self._length += 1
        if self._length == self.batch_size:
            self._wake()
        return 0

    def push(self, int64_t generation, int flags):
        """`push` buffers one outcome of a call permitted in ``generation``."""
        self.push_c(generation, flags)

    def take(self):
        """`take` empties the buffer: (its generation, its outcome bytes)."""
        taken = PyBytes_FromStringAndSize(<char*>self._buffer, self._length)
        self._length = 0
        return self.generation, taken

    def set_generation(self, int64_t generation):
        """`set_generation` makes ``generation`` current; outcomes buffered
        for another one are dropped as stale."""
        if generation != self.generation:
            self.stale += self._length
            self._length = 0
            self.generation = generation

    def pending(self):
        """`pending` is the number of buffered outcomes."""
        return self._length

    cdef int slow_flag_c(self, double duration) except -1:
        cdef int64_t duration_ns = duration_to_ns(duration)
        return C_SLOW_BIT if 0 < self.slow_call_ns < duration_ns else 0

    def slow_flag(self, double duration):
        """`slow_flag` is SLOW_BIT if a call of ``duration`` seconds is slow,
        else 0; ValueError for a negative or NaN duration."""
        return self.slow_flag_c(duration)

    def wake(self):
        """`wake` asks the flusher to flush now."""
        self._wake()


def outcome_flags(int outcome, int slow_flag):
    """`outcome_flags` is the byte of an outcome (SUCCESS, FAILURE,
    IGNORED) of a call whose slow bit is ``slow_flag``."""
    return _outcome_flags(outcome, slow_flag)


cdef inline int _outcome_flags(int outcome, int slow_flag) noexcept:
    if outcome == C_IGNORED:
        return C_IGNORED_BIT
    return slow_flag | (C_FAILED_BIT if outcome == C_FAILURE else 0)


cdef class FleetPermit:
    """`FleetPermit` lets one call go ahead; report its outcome exactly once
    with `on_success`, `on_error`, `on_result` or `release`.

    ``core`` classifies exceptions and results (``classify_exception`` and
    ``classify_result``, as a breaker does); the outcome goes to
    ``recorder`` under ``generation``. A ``probe`` permit (HALF_OPEN) also
    wakes the flusher, since the fleet waits for its outcome. ``now`` is
    accepted for compatibility with :class:`ratefuse.breaker.Permit` and
    not used: the fleet dates outcomes when they are flushed. Thread-safe.
    """

    cdef object _core
    cdef Recorder _recorder
    cdef readonly int64_t generation
    cdef bint _probe

    def __init__(self, core, Recorder recorder not None, int64_t generation,
                 bint probe=False):
        self._core = core
        self._recorder = recorder
        self.generation = generation
        self._probe = probe

    cdef int _push(self, int flags) except -1:
        self._recorder.push_c(self.generation, flags)
        if self._probe:
            self._recorder._wake()
        return 0

    def on_success(self, double duration, now=None):
        """`on_success` records a call that returned normally."""
        self._push(self._recorder.slow_flag_c(duration))

    def on_error(self, double duration, exc, now=None):
        """`on_error` records a call that raised ``exc``, classified by the
        breaker's exception rules."""
        self._classified(self._core.classify_exception, exc, duration)

    def on_result(self, double duration, result, now=None):
        """`on_result` records a call that returned ``result``, classified by
        the breaker's result predicate."""
        self._classified(self._core.classify_result, result, duration)

    cdef int _classified(self, classify, value, double duration) except -1:
        # Pushes the outcome classify(value); if classify itself raises, the
        # call is pushed as IGNORED (freeing a probe) and that error wins.
        cdef int slow = self._recorder.slow_flag_c(duration)
        cdef int outcome
        try:
            outcome = classify(value)
        except BaseException:
            self._push(C_IGNORED_BIT)
            raise
        return self._push(_outcome_flags(outcome, slow))

    def release(self, now=None):
        """`release` gives the permit back unused: nothing is recorded, and
        a fleet-wide probe slot is freed."""
        self._push(C_IGNORED_BIT)

    def __repr__(self):
        return f"FleetPermit(generation={self.generation}, probe={self._probe})"


cdef class Gate:
    """`Gate` answers a fleet breaker's `try_acquire`: ``permit`` while it
    is set (the breaker sets it in CLOSED and DISABLED), else
    ``slow_path(now)``; a call with an explicit ``now`` always takes the
    slow path. The common case costs no Python frame. Thread-safe."""

    cdef public object permit
    cdef object _slow_path

    def __init__(self, slow_path):
        self._slow_path = slow_path
        self.permit = None

    def try_acquire(self, now=None):
        """`try_acquire` is the permit, or the slow path's answer."""
        permit = self.permit
        if permit is not None and now is None:
            return permit
        return self._slow_path(now)
