# The limiter engine, compiled. The spec is src/ratefuse/_engine_py.py: same
# names, signatures, errors and decisions. A decision runs with the GIL held
# and calls no Python code (the default clock is read in C), so it is atomic.
cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.long cimport PyLong_AsLongLongAndOverflow, PyLong_Check
from cpython.number cimport PyNumber_Index
from libc.math cimport INFINITY
from libc.stdint cimport int64_t
from libc.string cimport memset

from ratefuse._clock cimport monotonic_ns
from ratefuse._fixed_window_c cimport fixed_window_step
from ratefuse._gcra_c cimport gcra_step
from ratefuse._leaky_bucket_c cimport leaky_bucket_step
from ratefuse._sliding_log_c cimport sliding_log_step
from ratefuse._sliding_window_c cimport sliding_window_step
from ratefuse._step cimport NEVER, CSpec, StepFn, Verdict

from ratefuse._spec import MAX_NOW_NS, state_words


@cython.final
@cython.freelist(64)
cdef class Decision:
    """`Decision` is the answer to one request for ``cost`` units.

    ``allowed``: the cost was admitted and consumed. ``remaining``: units
    that would be admitted right now after this decision. ``retry_after``:
    seconds until this cost could be admitted (0.0 if allowed, ``inf`` if it
    never can). ``reset_after``: seconds until the state is as if nothing had
    been admitted. ``limit``: the capacity of the limit that applied.
    Immutable; compares equal to a reference Decision with the same fields.
    """

    cdef readonly bint allowed
    cdef readonly int64_t remaining
    cdef readonly double retry_after
    cdef readonly double reset_after
    cdef readonly int64_t limit

    def __init__(self, bint allowed, int64_t remaining, double retry_after,
                 double reset_after, int64_t limit):
        self.allowed = allowed
        self.remaining = remaining
        self.retry_after = retry_after
        self.reset_after = reset_after
        self.limit = limit

    def astuple(self):
        """`astuple` returns the fields in declaration order."""
        return (self.allowed, self.remaining, self.retry_after,
                self.reset_after, self.limit)

    def __eq__(self, other):
        astuple = getattr(other, "astuple", None)
        if astuple is None or type(other).__name__ != "Decision":
            return NotImplemented
        return self.astuple() == astuple()

    def __hash__(self):
        return hash(self.astuple())

    def __reduce__(self):
        return (Decision, self.astuple())

    def __repr__(self):
        return (
            f"Decision(allowed={bool(self.allowed)}, remaining={self.remaining}, "
            f"retry_after={self.retry_after!r}, reset_after={self.reset_after!r}, "
            f"limit={self.limit})"
        )


cdef inline double ns_to_seconds(int64_t ns) noexcept nogil:
    return INFINITY if ns == NEVER else <double>ns / 1e9


cdef inline bint later(int64_t retry, int64_t than) noexcept nogil:
    # Orders retry delays with NEVER as the latest.
    if than == NEVER:
        return False
    return retry == NEVER or retry > than


cdef inline int64_t to_cost(object cost) except -1:
    # An int in [0, 2**63); floats are refused, not truncated.
    cdef int overflow = 0
    cdef long long value
    if not PyLong_Check(cost):
        cost = PyNumber_Index(cost)
    value = PyLong_AsLongLongAndOverflow(cost, &overflow)
    if overflow:
        raise OverflowError(f"cost must be in [0, 2**63), got {cost}")
    if value < 0:
        raise ValueError(f"cost must be >= 0, got {cost}")
    return value


cdef int64_t resolve_now(object clock, object now) except -1:
    # The time of a decision: explicit `now`, else the injected clock.
    if now is None:
        now = clock()
    now = PyNumber_Index(now)
    if not 0 <= now <= MAX_NOW_NS:
        raise ValueError(f"now must be in [0, 2**62] nanoseconds, got {now}")
    return now


cdef StepFn step_for(str algorithm) except NULL:
    if algorithm == "gcra":
        return gcra_step
    if algorithm == "leaky_bucket":
        return leaky_bucket_step
    if algorithm == "fixed_window":
        return fixed_window_step
    if algorithm == "sliding_window":
        return sliding_window_step
    if algorithm == "sliding_log":
        return sliding_log_step
    raise ValueError(f"unknown algorithm {algorithm!r}")


cdef class LimiterCore:
    """`LimiterCore` decides costs for one subject against ``specs``, all or
    nothing.

    ``clock`` returns integer nanoseconds; None means the monotonic clock,
    read in C. Every method taking ``now`` uses it instead of the clock when
    given. Thread-safe: each decision is atomic.
    """

    cdef CSpec* _cspecs
    cdef Verdict* _verdicts
    cdef int64_t* _state
    cdef Py_ssize_t _count
    cdef Py_ssize_t _words
    cdef tuple _specs
    cdef object _clock

    def __cinit__(self, *args, **kwargs):
        # Takes any arguments so that Python subclasses (ratefuse.Limiter)
        # may have their own constructor signature.
        self._cspecs = NULL
        self._verdicts = NULL
        self._state = NULL

    def __init__(self, specs, clock=None):
        specs = tuple(specs)
        if not specs:
            raise ValueError("a limiter needs at least one limit, got none")
        if self._cspecs != NULL:
            raise TypeError("LimiterCore.__init__ may be called only once")
        cdef Py_ssize_t count = len(specs), index, words = 0
        self._cspecs = <CSpec*>PyMem_Malloc(count * sizeof(CSpec))
        self._verdicts = <Verdict*>PyMem_Malloc(count * sizeof(Verdict))
        if self._cspecs == NULL or self._verdicts == NULL:
            raise MemoryError()
        for index in range(count):
            spec = specs[index]
            self._cspecs[index].step = step_for(spec.algorithm)
            self._cspecs[index].capacity = spec.capacity
            self._cspecs[index].period_ns = spec.period_ns
            self._cspecs[index].interval_ns = spec.interval_ns
            self._cspecs[index].state_offset = words
            words += state_words(spec)
        self._state = <int64_t*>PyMem_Malloc(words * sizeof(int64_t))
        if self._state == NULL:
            raise MemoryError()
        memset(self._state, 0, words * sizeof(int64_t))
        self._count = count
        self._words = words
        self._specs = specs
        self._clock = clock

    def __dealloc__(self):
        PyMem_Free(self._cspecs)
        PyMem_Free(self._verdicts)
        PyMem_Free(self._state)

    @property
    def clock(self):
        """`clock` is the injected clock, or None for the monotonic clock."""
        return self._clock

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
        if self._count == 1:  # the common case, without the compound passes
            self._cspecs.step(self._cspecs, self._state, at, units, True, &verdict)
        else:
            self._decide(at, units, &verdict)
        return verdict.allowed

    def decide(self, cost=1, now=None):
        """`decide` is `try_acquire` with the whole :class:`Decision`."""
        cdef Verdict verdict
        cdef int64_t units = to_cost(cost)
        cdef int64_t at
        if now is None and self._clock is None:
            at = monotonic_ns()
        else:
            at = resolve_now(self._clock, now)
        cdef Py_ssize_t binding = self._decide(at, units, &verdict)
        cdef Decision decision = Decision.__new__(Decision)
        decision.allowed = verdict.allowed
        decision.remaining = verdict.remaining
        decision.retry_after = ns_to_seconds(verdict.retry_after_ns)
        decision.reset_after = ns_to_seconds(verdict.reset_after_ns)
        decision.limit = self._cspecs[binding].capacity
        return decision

    def reset(self):
        """`reset` forgets everything admitted: the state is as if new."""
        memset(self._state, 0, self._words * sizeof(int64_t))

    cdef Py_ssize_t _decide(self, int64_t now, int64_t cost,
                            Verdict* out) noexcept:
        # Decides and commits all-or-nothing; returns the binding spec index.
        cdef CSpec* spec = self._cspecs
        if self._count == 1:
            spec.step(spec, self._state, now, cost, True, out)
            return 0
        cdef bint allowed = self._step_all(now, cost, False)
        if allowed:
            self._step_all(now, cost, True)
        return self._combine(allowed, out)

    cdef bint _step_all(self, int64_t now, int64_t cost, bint commit) noexcept:
        cdef Py_ssize_t index
        cdef bint allowed = True
        cdef CSpec* spec
        for index in range(self._count):
            spec = &self._cspecs[index]
            spec.step(spec, self._state + spec.state_offset, now, cost, commit,
                      &self._verdicts[index])
            allowed = allowed and self._verdicts[index].allowed
        return allowed

    cdef Py_ssize_t _combine(self, bint allowed, Verdict* out) noexcept:
        # See combine() in the reference for the rule.
        cdef Py_ssize_t index, binding = 0
        cdef Verdict* verdict
        cdef Verdict* best
        out.allowed = allowed
        out.remaining = self._verdicts[0].remaining
        out.retry_after_ns = 0
        out.reset_after_ns = 0
        for index in range(self._count):
            verdict = &self._verdicts[index]
            best = &self._verdicts[binding]
            if allowed:
                if verdict.remaining < best.remaining:
                    binding = index
            elif not verdict.allowed and (
                best.allowed or later(verdict.retry_after_ns, best.retry_after_ns)
            ):
                binding = index
            if verdict.remaining < out.remaining:
                out.remaining = verdict.remaining
            if later(verdict.retry_after_ns, out.retry_after_ns):
                out.retry_after_ns = verdict.retry_after_ns
            if verdict.reset_after_ns > out.reset_after_ns:
                out.reset_after_ns = verdict.reset_after_ns
        return binding
