# The verbs, written once, compiled. The spec is src/ratefuse/engine/_verbs_py.py.
#
# Verbs holds what every limiter core shares (the clock, the wait bounds,
# the sleeps, the outcome counts) and writes the verbs once over a state
# locator: `where` names the state words of a key (its fingerprint in the
# keyed or the shared-memory table; 0 for a core of one subject). A core
# subclasses it, implements _step, _reserve and _forget over its own store,
# and its public methods are one line over the verbs here. The hooks are
# virtual (one indirect call, about a nanosecond); nothing else is added to
# a decision. The fast parts of decide and acquire are inline functions in
# _verbs_c.pxd.
from libc.stdint cimport int64_t, uint64_t

from ratefuse.core._args cimport resolve_now, to_cost
from ratefuse.core._step cimport StepResult

from functools import partial

from ratefuse.core.counters import LimiterCounters
from ratefuse.engine.waiting import (
    acquire_timeout,
    acquire_when_awaited,
    wait,
    wait_bound_ns,
)


cdef class Verbs:
    """`Verbs` is the base of every compiled limiter core; see the module."""

    def __cinit__(self, *args, **kwargs):
        # Takes any arguments so that subclasses, and their Python
        # subclasses (ratefuse.Limiter), may have their own signatures.
        self._outcome_counts[0] = self._outcome_counts[1] = 0

    cdef int _init_waits(self, object clock, object max_wait, object sleep,
                         object async_sleep) except -1:
        self._max_wait_ns = wait_bound_ns(None, max_wait)
        self._max_wait = max_wait
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._clock = clock
        return 0

    @property
    def clock(self):
        """`clock` is the injected clock, or None for the monotonic clock."""
        return self._clock

    def counters(self):
        """`counters` snapshots the decisions counted since construction (see
        ratefuse.core.counters.LimiterCounters)."""
        return LimiterCounters(self._outcome_counts[1], self._outcome_counts[0])

    def _clock_ns(self):
        return resolve_now(self._clock, None)

    # ---- the steps a core implements over its store ----

    cdef int64_t _step(self, uint64_t where, int64_t cost, int64_t now,
                       StepResult* out) except -1:
        # Decides `cost` for the state at `where` and counts the outcome,
        # atomically; returns the capacity of the limit that applied.
        raise NotImplementedError

    cdef object _reserve(self, uint64_t where, int64_t units, int64_t bound,
                         int64_t now, bint none_if_now):
        # _step for a reservation of at most `bound` ns ahead; returns the
        # Reservation, or with none_if_now None for units admitted with no
        # wait (acquire's fast path builds nothing to throw away).
        raise NotImplementedError

    cdef int _forget(self, uint64_t where) except -1:
        # Makes the state at `where` as if new.
        raise NotImplementedError

    # ---- the verbs, over a location ----

    cdef int64_t _bound(self, object timeout) except -1:
        return wait_bound_ns(timeout, self._max_wait)

    cdef object _reservation(self, uint64_t where, object cost, object max_wait,
                             object now):
        cdef int64_t units = to_cost(cost)
        cdef int64_t bound = (
            self._max_wait_ns if max_wait is None
            else wait_bound_ns(max_wait, self._max_wait, "max_wait")
        )
        return self._reserve(where, units, bound, resolve_now(self._clock, now),
                             False)

    cdef object _wait(self, object first, object key, bint keyed, object cost,
                      object timeout):
        # acquire's slow path (see acquire_at in _verbs_c.pxd).
        wait(first, self._again(key, keyed, cost), self._clock_ns,
             acquire_timeout(timeout, self._max_wait), self._sleep)

    cdef object _acquire_async(self, uint64_t where, object key, bint keyed,
                               object cost, object timeout):
        # The arguments are checked now; the units are taken when awaited.
        cdef int64_t units = to_cost(cost)
        cdef int64_t bound = (
            self._max_wait_ns if timeout is None else self._bound(timeout)
        )
        return acquire_when_awaited(
            partial(self._reserve_now, where, units, bound),
            self._again(key, keyed, cost), self._clock_ns,
            acquire_timeout(timeout, self._max_wait), self._async_sleep,
        )

    def _reserve_now(self, uint64_t where, int64_t units, int64_t bound):
        # The first reservation of an acquire_async, when it is awaited.
        return self._reserve(where, units, bound, resolve_now(self._clock, None),
                             False)

    cdef object _again(self, object key, bint keyed, object cost):
        # What reserves anew after a denial: the public reserve, with the key
        # for a keyed core.
        if keyed:
            return partial(self.reserve, key, cost)
        return partial(self.reserve, cost)
