# The limiter engine, compiled. The spec is src/ratefuse/engine/_subject_py.py:
# same names, signatures, errors and decisions. A decision runs with the GIL
# held and calls no Python code (the default clock is read in C), so it is
# atomic. The verbs are Verbs' (_verbs_c.pyx); this module holds the state.
from cpython.mem cimport (
    PyMem_Free,
    PyMem_Malloc,
    PyMem_RawFree,
    PyMem_RawMalloc,
    PyMem_Realloc,
)
from libc.stdint cimport int64_t, uint64_t
from libc.string cimport memcpy, memset

from ratefuse.core._args cimport resolve_now, to_cost
from ratefuse.core._clock cimport monotonic_ns
from ratefuse.core._decision_c cimport make_reservation
from ratefuse.core._compound_c cimport (
    CompoundLimit,
    compound_decide,
    compound_free,
    compound_init,
    compound_refund,
    compound_reserve,
)
from ratefuse.core._step cimport StepResult
from ratefuse.engine._verbs_c cimport Verbs, acquire_at, decision_at

from functools import partial

from ratefuse.core._decision_c import Decision
from ratefuse.core.respec import keeps_state

__all__ = ["Decision", "LimiterCore"]

cdef enum:
    # Stamps of a reservation of up to this many limits are copied on the
    # stack; more go to the heap.
    STAMPS_ON_STACK = 8


cdef class LimiterCore(Verbs):
    """`LimiterCore` decides costs for one subject against ``specs``, all or
    nothing.

    ``clock`` returns integer nanoseconds; None means the monotonic clock,
    read in C. Every method taking ``now`` uses it instead of the clock when
    given. ``max_wait`` (seconds, None: unbounded) bounds every acquire's
    wait; ``sleep`` and ``async_sleep`` replace ``time.sleep`` and
    ``asyncio.sleep``. Thread-safe: each decision is atomic.
    """

    cdef CompoundLimit _program
    cdef int64_t* _state
    cdef int64_t* _stamps
    cdef tuple _specs
    # The stamps buffer only grows (see reconfigure); _epoch, the reset
    # epoch, counts the reconfigures that started the state anew.
    cdef Py_ssize_t _stamps_size
    cdef int64_t _epoch

    def __cinit__(self, *args, **kwargs):
        memset(&self._program, 0, sizeof(CompoundLimit))
        self._state = NULL
        self._stamps = NULL

    def __init__(self, specs, clock=None, *, max_wait=None, sleep=None,
                 async_sleep=None):
        if self._state != NULL:
            raise TypeError("LimiterCore.__init__ may be called only once")
        specs = tuple(specs)
        self._init_waits(clock, max_wait, sleep, async_sleep)
        compound_init(&self._program, specs)
        self._state = <int64_t*>PyMem_Malloc(self._program.words * sizeof(int64_t))
        self._stamps = <int64_t*>PyMem_Malloc(self._program.count * sizeof(int64_t))
        if self._state == NULL or self._stamps == NULL:
            raise MemoryError()
        self._stamps_size = self._program.count
        memset(self._state, 0, self._program.words * sizeof(int64_t))
        self._specs = specs

    def __dealloc__(self):
        compound_free(&self._program)
        PyMem_Free(self._state)
        PyMem_Free(self._stamps)

    @property
    def _specs(self):
        return self._specs

    def try_acquire(self, cost=1, now=None):
        """`try_acquire` consumes ``cost`` units if every limit admits them and
        reports whether it did. Cost 0 asks without consuming."""
        cdef StepResult verdict
        cdef int64_t units = to_cost(cost)
        cdef int64_t at
        if now is None and self._clock is None:
            at = monotonic_ns()
        else:
            at = resolve_now(self._clock, now)
        if self._program.count == 1:  # the common case, without a call
            self._program.specs.step(
                self._program.specs, self._state, at, units, True, &verdict
            )
        else:
            compound_decide(&self._program, self._state, at, units, &verdict)
        self._outcome_counts[verdict.allowed != 0] += 1
        return verdict.allowed

    def decide(self, cost=1, now=None):
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        return decision_at(self, 0, cost, now)

    def reserve(self, cost=1, max_wait=None, now=None):
        """`reserve` sets ``cost`` units aside if they can be used within
        ``max_wait`` seconds (None: the limiter's max_wait, else no bound).
        gcra and leaky_bucket schedule ahead; the window algorithms reserve
        only what they admit now."""
        return self._reservation(0, cost, max_wait, now)

    def acquire(self, cost=1, timeout=None):
        """`acquire` takes ``cost`` units, sleeping until they are admitted
        (never busy-waiting); raises RateLimitExceeded at once if that would
        take longer than ``timeout`` seconds or can never happen."""
        return acquire_at(self, 0, None, False, cost, timeout)

    def acquire_async(self, cost=1, timeout=None):
        """`acquire_async` is `acquire` for asyncio: ``await`` it."""
        return self._acquire_async(0, None, False, cost, timeout)

    def reset(self):
        """`reset` forgets everything admitted: the state is as if new."""
        self._forget(0)

    cdef int64_t _step(self, uint64_t where, int64_t cost, int64_t now,
                       StepResult* out) except -1:
        cdef Py_ssize_t binding = 0
        if self._program.count == 1:  # the common case, without a call
            self._program.specs.step(self._program.specs, self._state, now, cost,
                                     True, out)
        else:
            binding = compound_decide(&self._program, self._state, now, cost, out)
        self._outcome_counts[out.allowed != 0] += 1
        return self._program.specs[binding].capacity

    cdef object _reserve(self, uint64_t where, int64_t units, int64_t bound,
                         int64_t now, bint none_if_now):
        cdef StepResult verdict
        cdef Py_ssize_t binding = compound_reserve(
            &self._program, self._state, now, units, bound, &verdict, self._stamps
        )
        self._outcome_counts[verdict.allowed != 0] += 1
        if none_if_now and verdict.allowed and verdict.retry_after_ns == 0:
            return None
        # Copy everything the reservation needs to C memory before making any
        # Python object: an allocation may run the garbage collector, hence a
        # finalizer or another thread that decides on this limiter (and
        # overwrites the shared stamps) or reconfigures it.
        cdef int64_t capacity = self._program.specs[binding].capacity
        cdef Py_ssize_t count = self._program.count, index
        cdef int64_t epoch = self._epoch
        cdef int64_t few[STAMPS_ON_STACK]
        cdef int64_t* stamps = few
        if count > STAMPS_ON_STACK:
            stamps = <int64_t*>PyMem_RawMalloc(count * sizeof(int64_t))
            if stamps == NULL:
                raise MemoryError()
        memcpy(stamps, self._stamps, count * sizeof(int64_t))
        try:
            stamp_tuple = tuple([stamps[index] for index in range(count)])
        finally:
            if stamps != few:
                PyMem_RawFree(stamps)
        return make_reservation(
            &verdict, capacity, partial(self._refund, units, stamp_tuple, epoch),
        )

    cdef int _forget(self, uint64_t where) except -1:
        memset(self._state, 0, self._program.words * sizeof(int64_t))
        return 0

    def _refund(self, cost, tuple stamps, int64_t epoch, now):
        cdef int64_t at = resolve_now(self._clock, now)
        cdef Py_ssize_t index
        if epoch != self._epoch:
            return  # the state was started anew since: nothing to give back
        for index in range(self._program.count):
            self._stamps[index] = stamps[index]
        compound_refund(&self._program, self._state, at, cost, self._stamps)

    def reconfigure(self, specs):
        """`reconfigure` replaces the limits in one atomic step: every decision
        runs wholly under the old specs or wholly under the new ones.

        The state is kept when it means the same under the new specs (see
        ratefuse.core.respec.keeps_state); otherwise it starts new, as after
        `reset`, and reservations taken before refund nothing. Counters are
        kept. Raises ValueError for bad specs, and then nothing changes.
        """
        cdef CompoundLimit program
        specs = tuple(specs)
        memset(&program, 0, sizeof(CompoundLimit))
        try:
            compound_init(&program, specs)
            while True:
                judged = self._specs
                if self._swap(&program, specs, judged, keeps_state(judged, specs)):
                    break
                # Another reconfigure came in between: judge again.
        finally:
            compound_free(&program)  # the retired program, or the unused one

    cdef bint _swap(self, CompoundLimit* program, tuple specs, tuple judged,
                    bint keep) except -1:
        # Installs *program (leaving the retired one in it) if the specs are
        # still `judged`, those `keep` was judged against; returns False
        # otherwise. From the check to the swap there are only C statements,
        # so no other thread runs in between (decisions hold the GIL).
        cdef int64_t* state = NULL
        cdef int64_t* stamps
        cdef CompoundLimit retired
        if not keep:
            state = <int64_t*>PyMem_Malloc(program.words * sizeof(int64_t))
            if state == NULL:
                raise MemoryError()
            memset(state, 0, program.words * sizeof(int64_t))
        if program.count > self._stamps_size:
            stamps = <int64_t*>PyMem_Realloc(self._stamps,
                                             program.count * sizeof(int64_t))
            if stamps == NULL:
                PyMem_Free(state)
                raise MemoryError()
            self._stamps = stamps
            self._stamps_size = program.count
        if judged is not self._specs:
            PyMem_Free(state)
            return False
        retired = self._program
        self._program = program[0]
        program[0] = retired
        if not keep:
            state, self._state = self._state, state
            self._epoch += 1
        PyMem_Free(state)
        self._specs = specs
        return True
