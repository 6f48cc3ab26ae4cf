# The verbs, written once, compiled: see _verbs_c.pyx. The fast parts of
# decide and acquire are inline functions here, so that each core's public
# method runs them without a call into another module; the slow parts
# (waiting) are Verbs' methods.
from libc.stdint cimport int64_t, uint64_t

from ratefuse.core._args cimport resolve_now, to_cost
from ratefuse.core._clock cimport monotonic_ns
from ratefuse.core._decision_c cimport make_decision
from ratefuse.core._step cimport StepResult


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
                       StepResult* out) except -1
    cdef object _reserve(self, uint64_t where, int64_t units, int64_t bound,
                         int64_t now, bint none_if_now)
    cdef int _forget(self, uint64_t where) except -1
    # The verbs, over a location.
    cdef int64_t _bound(self, object timeout) except -1
    cdef object _wait(self, object first, object key, bint keyed, object cost,
                      object timeout)
    cdef object _reservation(self, uint64_t where, object cost, object max_wait,
                             object now)
    cdef object _acquire_async(self, uint64_t where, object key, bint keyed,
                               object cost, object timeout)
    cdef object _again(self, object key, bint keyed, object cost)


cdef inline object decision_at(Verbs core, uint64_t where, object cost, object now):
    # decide, over a location.
    cdef StepResult verdict
    cdef int64_t units = to_cost(cost)
    cdef int64_t at
    if now is None and core._clock is None:  # the common case, read in C
        at = monotonic_ns()
    else:
        at = resolve_now(core._clock, now)
    cdef int64_t capacity = core._step(where, units, at, &verdict)
    return make_decision(&verdict, capacity)


cdef inline object acquire_at(Verbs core, uint64_t where, object key, bint keyed,
                              object cost, object timeout):
    # acquire, over a location (`key` and `keyed` say how to reserve anew).
    cdef int64_t units = to_cost(cost)
    cdef int64_t bound = core._max_wait_ns if timeout is None else core._bound(timeout)
    cdef int64_t now
    if core._clock is None:
        now = monotonic_ns()
    else:
        now = resolve_now(core._clock, None)
    first = core._reserve(where, units, bound, now, True)
    if first is None:
        return None  # the fast path: admitted now, nothing to build
    return core._wait(first, key, keyed, cost, timeout)
