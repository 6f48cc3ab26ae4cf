# The verbs, written once, compiled: see _verbs_c.pyx.
from libc.stdint cimport int64_t, uint64_t

from ratefuse.core._step cimport Verdict


cdef class Verbs:
    cdef object _clock
    cdef object _max_wait
    cdef int64_t _max_wait_ns
    cdef object _sleep
    cdef object _async_sleep
    # Decisions counted by outcome (index 1: allowed, 0: denied), bumped by
    # the core's steps while they hold the state; read by counters().
    cdef int64_t _outcome_counts[2]

    cdef int _init_waits(self, object clock, object max_wait, object sleep,
                         object async_sleep) except -1
    # The steps a core implements over its store (see _verbs_c.pyx).
    cdef int64_t _step(self, uint64_t where, int64_t cost, int64_t now,
                       Verdict* out) except -1
    cdef object _reserve(self, uint64_t where, int64_t units, int64_t bound,
                         int64_t now, bint none_if_now)
    cdef int _forget(self, uint64_t where) except -1
    # The verbs, over a location.
    cdef object _decision(self, uint64_t where, object cost, object now)
    cdef object _reservation(self, uint64_t where, object cost, object max_wait,
                             object now)
    cdef object _acquire(self, uint64_t where, object key, bint keyed, object cost,
                         object timeout)
    cdef object _acquire_async(self, uint64_t where, object key, bint keyed,
                               object cost, object timeout)
    cdef object _again(self, object key, bint keyed, object cost)
