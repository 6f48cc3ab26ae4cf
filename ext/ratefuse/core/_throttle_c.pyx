# Client-side adaptive throttling, compiled. The spec is
# src/ratefuse/core/_throttle_py.py: same names, signatures and decisions.
# Every method is C that runs no Python code, so under the GIL each is
# atomic without a lock.
from libc.stdint cimport int64_t

from ratefuse.core.breaker._window_c cimport (
    Window,
    window_advance,
    window_clear,
    window_free,
    window_init,
    window_record,
)

DRAW_BITS = 20
DRAW_RANGE = 1 << DRAW_BITS
MILLI = 1000

cdef int64_t C_DRAW_RANGE = 1 << 20
cdef int64_t C_MILLI = 1000


cdef class ThrottleCore:
    """`ThrottleCore` decides client-side throttling over a time window of
    ``buckets`` (>= 1) buckets of ``bucket_ns`` (>= 1) ns each, with
    ``K = k_milli / 1000`` (``k_milli`` >= 1000). Times are integer ns on
    one clock; the caller checks the arguments (`ThrottleConfig`)."""

    cdef Window _window
    cdef readonly int64_t k_milli
    cdef readonly int64_t admitted
    cdef readonly int64_t rejected
    cdef readonly int64_t accepted
    cdef readonly int64_t refused

    def __cinit__(self, int64_t buckets, int64_t bucket_ns, int64_t k_milli):
        window_init(&self._window, buckets, bucket_ns)
        self.k_milli = k_milli

    def __dealloc__(self):
        window_free(&self._window)

    def decide(self, int64_t now, int64_t draw):
        """`decide` reports whether a request may go to the upstream at
        ``now`` given a uniform ``draw`` in [0, DRAW_RANGE); a refusal is
        recorded as a request that was not accepted."""
        window_advance(&self._window, now)
        cdef int64_t requests = self._window.calls
        cdef int64_t excess = (C_MILLI * requests
                               - self.k_milli * (requests - self._window.failures))
        if excess > 0 and draw * (requests + 1) * C_MILLI < excess * C_DRAW_RANGE:
            window_record(&self._window, True, False, now)
            self.rejected += 1
            return False
        self.admitted += 1
        return True

    def record(self, bint accepted, int64_t now):
        """`record` counts the outcome of a request `decide` let go."""
        window_record(&self._window, not accepted, False, now)
        if accepted:
            self.accepted += 1
        else:
            self.refused += 1

    def totals(self, int64_t now):
        """`totals` is (requests, accepts) in the window at ``now``."""
        window_advance(&self._window, now)
        return self._window.calls, self._window.calls - self._window.failures

    def counters(self):
        """`counters` is (admitted, rejected, accepted, refused) since
        construction."""
        return self.admitted, self.rejected, self.accepted, self.refused

    def clear(self):
        """`clear` empties the window (the counters keep growing)."""
        window_clear(&self._window)
