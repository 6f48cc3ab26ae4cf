# The limiter engine, compiled. The spec is src/ratefuse/engine/_subject_py.py: same
# names, signatures, errors and decisions. A decision runs with the GIL held
# and calls no Python code (the default clock is read in C), so it is atomic.
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.stdint cimport int64_t
from libc.string cimport memset

from ratefuse.core._args cimport resolve_now, to_cost
from ratefuse.core._clock cimport monotonic_ns
from ratefuse.core._decision_c cimport make_decision, make_reservation
from ratefuse.core._compound_c cimport (
    CompoundLimit,
    compound_decide,
    compound_free,
    compound_init,
    compound_refund,
    compound_reserve,
)
from ratefuse.core._step cimport StepResult

from functools import partial

from ratefuse.core.counters import LimiterCounters
from ratefuse.core._decision_c import Decision
from ratefuse.core.respec import keeps_state
from ratefuse.engine.waiting import acquire_timeout, wait, wait_async, wait_bound_ns

__all__ = ["Decision", "LimiterCore"]


cdef class LimiterCore:
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
    cdef object _clock
    cdef object _max_wait
    cdef int64_t _max_wait_ns
    cdef object _sleep
    cdef object _async_sleep
    # Verdicts counted by outcome (index 1: allowed, 0: denied), bumped with
    # the GIL held by every decision; read by counters().
    cdef int64_t _verdicts[2]
    # The stamps buffer only grows (see reconfigure); _layout counts the
    # reconfigures that started the state anew.
    cdef Py_ssize_t _stamps_size
    cdef int64_t _layout

    def __cinit__(self, *args, **kwargs):
        # Takes any arguments so that Python subclasses (ratefuse.Limiter)
        # may have their own constructor signature.
        memset(&self._program, 0, sizeof(CompoundLimit))
        self._state = NULL
        self._stamps = NULL
        self._verdicts[0] = self._verdicts[1] = 0

    def __init__(self, specs, clock=None, *, max_wait=None, sleep=None,
                 async_sleep=None):
        if self._state != NULL:
            raise TypeError("LimiterCore.__init__ may be called only once")
        specs = tuple(specs)
        self._max_wait_ns = wait_bound_ns(None, max_wait)
        compound_init(&self._program, specs)
        self._state = <int64_t*>PyMem_Malloc(self._program.words * sizeof(int64_t))
        self._stamps = <int64_t*>PyMem_Malloc(self._program.count * sizeof(int64_t))
        if self._state == NULL or self._stamps == NULL:
            raise MemoryError()
        self._stamps_size = self._program.count
        memset(self._state, 0, self._program.words * sizeof(int64_t))
        self._specs = specs
        self._clock = clock
        self._max_wait = max_wait
        self._sleep = sleep
        self._async_sleep = async_sleep

    def __dealloc__(self):
        compound_free(&self._program)
        PyMem_Free(self._state)
        PyMem_Free(self._stamps)

    @property
    def clock(self):
        """`clock` is the injected clock, or None for the monotonic clock."""
        return self._clock

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
        self._verdicts[verdict.allowed != 0] += 1
        return verdict.allowed

    def decide(self, cost=1, now=None):
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        cdef StepResult verdict
        cdef int64_t units = to_cost(cost)
        cdef int64_t at = resolve_now(self._clock, now)
        cdef Py_ssize_t binding = compound_decide(
            &self._program, self._state, at, units, &verdict
        )
        self._verdicts[verdict.allowed != 0] += 1
        return make_decision(&verdict, self._program.specs[binding].capacity)

    def reset(self):
        """`reset` forgets everything admitted: the state is as if new."""
        memset(self._state, 0, self._program.words * sizeof(int64_t))

    def reserve(self, cost=1, max_wait=None, now=None):
        """`reserve` sets ``cost`` units aside if they can be used within
        ``max_wait`` seconds (None: the limiter's max_wait, else no bound).
        gcra and leaky_bucket schedule ahead; the window algorithms reserve
        only what they admit now."""
        cdef int64_t units = to_cost(cost)
        cdef int64_t bound = (
            self._max_wait_ns if max_wait is None
            else wait_bound_ns(max_wait, self._max_wait, "max_wait")
        )
        return self._reserve(units, bound, resolve_now(self._clock, now))

    cdef object _reserve(self, int64_t units, int64_t bound, int64_t at):
        cdef StepResult verdict
        cdef Py_ssize_t binding = compound_reserve(
            &self._program, self._state, at, units, bound, &verdict, self._stamps
        )
        self._verdicts[verdict.allowed != 0] += 1
        return self._reservation(&verdict, binding, units)

    cdef object _reservation(self, const StepResult* verdict, Py_ssize_t binding,
                             int64_t units):
        # Read everything the program owns before allocating: an allocation
        # may run the garbage collector, hence Python code, hence another
        # thread's reconfigure. The stamps buffer never shrinks, so reading
        # it afterwards stays in bounds.
        cdef int64_t capacity = self._program.specs[binding].capacity
        cdef Py_ssize_t count = self._program.count
        cdef int64_t layout = self._layout
        stamps = tuple([self._stamps[index] for index in range(count)])
        return make_reservation(
            verdict, capacity, partial(self._refund, units, stamps, layout),
        )

    def acquire(self, cost=1, timeout=None):
        """`acquire` takes ``cost`` units, sleeping until they are admitted
        (never busy-waiting); raises RateLimitExceeded at once if that would
        take longer than ``timeout`` seconds or can never happen."""
        cdef StepResult verdict
        cdef int64_t units = to_cost(cost)
        cdef int64_t bound = (
            self._max_wait_ns if timeout is None
            else wait_bound_ns(timeout, self._max_wait)
        )
        cdef int64_t at
        if self._clock is None:
            at = monotonic_ns()
        else:
            at = resolve_now(self._clock, None)
        cdef Py_ssize_t binding = compound_reserve(
            &self._program, self._state, at, units, bound, &verdict, self._stamps
        )
        self._verdicts[verdict.allowed != 0] += 1
        if verdict.allowed and verdict.retry_after_ns == 0:
            return None  # the fast path: admitted now, nothing to build
        wait(self._reservation(&verdict, binding, units), partial(self.reserve, cost),
             self._clock_ns, acquire_timeout(timeout, self._max_wait), self._sleep)

    def acquire_async(self, cost=1, timeout=None):
        """`acquire_async` is `acquire` for asyncio: ``await`` it."""
        cdef int64_t units = to_cost(cost)
        cdef int64_t bound = (
            self._max_wait_ns if timeout is None
            else wait_bound_ns(timeout, self._max_wait)
        )
        first = self._reserve(units, bound, resolve_now(self._clock, None))
        return wait_async(first, partial(self.reserve, cost), self._clock_ns,
                          acquire_timeout(timeout, self._max_wait), self._async_sleep)

    def _clock_ns(self):
        return resolve_now(self._clock, None)

    def _refund(self, cost, tuple stamps, int64_t layout, now):
        cdef int64_t at = resolve_now(self._clock, now)
        cdef Py_ssize_t index
        if layout != self._layout:
            return  # the state was started anew since: nothing to give back
        for index in range(self._program.count):
            self._stamps[index] = stamps[index]
        compound_refund(&self._program, self._state, at, cost, self._stamps)

    def counters(self):
        """`counters` snapshots the verdicts counted since construction (see
        :class:`ratefuse.core.counters.LimiterCounters`)."""
        return LimiterCounters(self._verdicts[1], self._verdicts[0])

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
            self._layout += 1
        PyMem_Free(state)
        self._specs = specs
        return True
