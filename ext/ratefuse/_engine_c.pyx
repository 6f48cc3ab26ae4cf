# The limiter engine, compiled. The spec is src/ratefuse/_engine_py.py: same
# names, signatures, errors and decisions. A decision runs with the GIL held
# and calls no Python code (the default clock is read in C), so it is atomic.
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.stdint cimport int64_t
from libc.string cimport memset

from ratefuse._args cimport resolve_now, to_cost
from ratefuse._clock cimport monotonic_ns
from ratefuse._decision_c cimport make_decision, make_reservation
from ratefuse._program_c cimport (
    Program,
    program_decide,
    program_free,
    program_init,
    program_refund,
    program_reserve,
)
from ratefuse._step cimport Verdict

from functools import partial

from ratefuse._decision_c import Decision
from ratefuse._waiting import acquire_timeout, wait, wait_async, wait_bound_ns

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

    cdef Program _program
    cdef int64_t* _state
    cdef int64_t* _stamps
    cdef tuple _specs
    cdef object _clock
    cdef object _max_wait
    cdef int64_t _max_wait_ns
    cdef object _sleep
    cdef object _async_sleep

    def __cinit__(self, *args, **kwargs):
        # Takes any arguments so that Python subclasses (ratefuse.Limiter)
        # may have their own constructor signature.
        memset(&self._program, 0, sizeof(Program))
        self._state = NULL
        self._stamps = NULL

    def __init__(self, specs, clock=None, *, max_wait=None, sleep=None,
                 async_sleep=None):
        if self._state != NULL:
            raise TypeError("LimiterCore.__init__ may be called only once")
        specs = tuple(specs)
        self._max_wait_ns = wait_bound_ns(None, max_wait)
        program_init(&self._program, specs)
        self._state = <int64_t*>PyMem_Malloc(self._program.words * sizeof(int64_t))
        self._stamps = <int64_t*>PyMem_Malloc(self._program.count * sizeof(int64_t))
        if self._state == NULL or self._stamps == NULL:
            raise MemoryError()
        memset(self._state, 0, self._program.words * sizeof(int64_t))
        self._specs = specs
        self._clock = clock
        self._max_wait = max_wait
        self._sleep = sleep
        self._async_sleep = async_sleep

    def __dealloc__(self):
        program_free(&self._program)
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
        cdef Verdict verdict
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
            program_decide(&self._program, self._state, at, units, &verdict)
        return verdict.allowed

    def decide(self, cost=1, now=None):
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        cdef Verdict verdict
        cdef int64_t units = to_cost(cost)
        cdef int64_t at = resolve_now(self._clock, now)
        cdef Py_ssize_t binding = program_decide(
            &self._program, self._state, at, units, &verdict
        )
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
        cdef Verdict verdict
        cdef Py_ssize_t binding = program_reserve(
            &self._program, self._state, at, units, bound, &verdict, self._stamps
        )
        return self._reservation(&verdict, binding, units)

    cdef object _reservation(self, const Verdict* verdict, Py_ssize_t binding,
                             int64_t units):
        stamps = tuple([self._stamps[index] for index in range(self._program.count)])
        return make_reservation(
            verdict, self._program.specs[binding].capacity,
            partial(self._refund, units, stamps),
        )

    def acquire(self, cost=1, timeout=None):
        """`acquire` takes ``cost`` units, sleeping until they are admitted
        (never busy-waiting); raises RateLimitExceeded at once if that would
        take longer than ``timeout`` seconds or can never happen."""
        cdef Verdict verdict
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
        cdef Py_ssize_t binding = program_reserve(
            &self._program, self._state, at, units, bound, &verdict, self._stamps
        )
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

    def _refund(self, cost, tuple stamps, now):
        cdef int64_t at = resolve_now(self._clock, now)
        cdef Py_ssize_t index
        for index in range(self._program.count):
            self._stamps[index] = stamps[index]
        program_refund(&self._program, self._state, at, cost, self._stamps)
