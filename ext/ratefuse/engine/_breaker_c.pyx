# The circuit breaker core, compiled. The spec is src/ratefuse/engine/_breaker_py.py:
# same names, signatures, errors and decisions, and the same clock calls.
# Every machine step is C that runs no Python code, so under the GIL it is
# atomic without a lock; listeners run after the step, outside it. The
# attributes are declared in _breaker_c.pxd. GuardedFunction, the sync
# decorator, is the compiled twin of ratefuse.engine.breaker_forms's.
cimport cython
from libc.math cimport INFINITY
from libc.stdint cimport int64_t

from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF

from ratefuse.core.breaker._machine_c cimport (
    FAILURE,
    HALF_OPEN,
    IGNORED,
    ILLEGAL,
    NEED_NOW,
    WAIT_FOREVER,
    OPEN,
    REJECTED,
    SHOWN_PROBES,
    SHOWN_WINDOW,
    SUCCESS,
    UNKNOWN_NOW,
    Machine,
    machine_acquire,
    machine_advance,
    machine_free,
    machine_init,
    machine_record,
    machine_reset,
    machine_respec,
    machine_retry_after_ns,
    machine_transition,
)
from ratefuse.core._args cimport check_now, duration_to_ns
from ratefuse.core._clock cimport monotonic_ns

import functools
import logging
import types
from collections import deque

from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.core.breaker.spec import IllegalTransitionError, State
from ratefuse.core.counters import BreakerCounters
from ratefuse.core.errors import CircuitOpenError
from ratefuse.core.span_hooks import ON_REJECTED, SPAN_HOOKS
from ratefuse.engine.log_events import log_transition

cdef object logger = logging.getLogger("ratefuse.breaker")
# The span hooks as a C global list, read by index on a rejection.
cdef list _span_hooks = SPAN_HOOKS
assert ON_REJECTED == 1


cdef inline double ns_to_seconds(int64_t ns) noexcept nogil:
    return INFINITY if ns == WAIT_FOREVER else <double>ns / 1e9


cdef inline int64_t given_now(object now) except -2:
    # An explicit now, or UNKNOWN_NOW for None.
    return UNKNOWN_NOW if now is None else check_now(now)


cdef class BreakerCore:
    """`BreakerCore` decides whether calls may go ahead and learns from their
    outcomes, by the rules of ``config`` (None: the defaults).

    ``name`` names it in errors and logs. ``fallback`` (None: raise
    CircuitOpenError) is called with a rejected call's arguments by the
    guarded forms. ``listeners`` are added as by `add_listener`, after
    the log listener (`ratefuse.engine.log_events.log_transition`).
    ``clock`` returns integer nanoseconds; None means the monotonic clock,
    read in C. It is read only when a step needs the time. Methods taking
    ``now`` use it instead of the clock when given. Exceptions count as
    failures when they are instances of ``record_exceptions`` and not of
    ``ignore_exceptions`` and ``exception_predicate`` (None: always) returns
    true; other exceptions count as successes (the call was answered),
    except non-Exception BaseExceptions (cancellation, KeyboardInterrupt)
    and ignored ones, which are not recorded. ``result_predicate`` (None:
    never) returns true for a result that counts as a failure.
    Thread-safe: every step is atomic, and listeners run outside it.
    """

    def __init__(self, name="breaker", config=None, *, clock=None,
                 fallback=None, listeners=()):
        if self._ready:
            raise TypeError("BreakerCore.__init__ may be called only once")
        config = BreakerConfig() if config is None else config
        if not isinstance(config, BreakerConfig):
            raise TypeError(f"config must be a BreakerConfig, got {config!r}")
        spec = config.to_spec()
        machine_init(&self.machine, spec)
        self._ready = True
        self._name = str(name)
        self._clock = clock
        self._fallback = fallback
        self._adopt(config, spec)
        # The log listener first: a transition is logged before user code runs.
        self._listeners = [log_transition, *listeners]
        self._events = deque()
        self._delivering = False
        self._permit = None

    def __dealloc__(self):
        if self._ready:
            machine_free(&self.machine)

    @property
    def name(self):
        """`name` names the breaker in errors and logs."""
        return self._name

    @property
    def config(self):
        """`config` is the breaker's rules."""
        return self._config

    @property
    def fallback(self):
        """`fallback` is called with a rejected call's arguments, and its
        result returned, instead of raising CircuitOpenError; None: raise."""
        return self._fallback

    @property
    def spec(self):
        """`spec` is the lowered config the breaker decides with."""
        return self._spec

    @property
    def clock(self):
        """`clock` is the injected clock, or None for the monotonic clock."""
        return self._clock

    @property
    def state(self):
        """`state` is the current state. An OPEN breaker whose wait is over
        still reads OPEN until a call arrives and turns it HALF_OPEN."""
        return State(self.machine.state)

    @property
    def generation(self):
        """`generation` counts state changes, starting at 1."""
        return self.machine.generation

    @property
    def timed(self):
        """`timed` is true when call durations matter (slow-call tracking is
        on); callers of the two-step API may pass 0.0 otherwise."""
        return self._timed

    def now_ns(self):
        """`now_ns` reads the breaker's clock."""
        return self._read_clock()

    @cython.final
    cdef int64_t _read_clock(self) except -2:
        if self._clock is None:
            return monotonic_ns()
        return check_now(self._clock())

    @cython.final
    cdef inline int _check_ready(self) except -1:
        if not self._ready:
            raise RuntimeError("BreakerCore.__init__ was not called")
        return 0

    # --- steps -----------------------------------------------------------

    @cython.final
    cdef int64_t acquire_c(self, int64_t* now) except -2:
        # Returns the generation or REJECTED; *now is the time used.
        self._check_ready()
        if now[0] == UNKNOWN_NOW and self.machine.state == OPEN:
            # OPEN always needs the time: read it now rather than be asked.
            now[0] = self._read_clock()
        cdef int64_t result = machine_acquire(&self.machine, now[0])
        if result == NEED_NOW:
            now[0] = self._read_clock()
            result = machine_acquire(&self.machine, now[0])
        if self.machine.changed_from >= 0:
            self._take_change_or_release(result, now[0])
        return result

    @cython.final
    cdef int _take_change_or_release(self, int64_t result,
                                     int64_t now) except -1:
        # Delivers the change an acquire made; if a listener raises
        # KeyboardInterrupt or the like, the caller never sees the permit, so
        # it is given back (else a probe leaks and HALF_OPEN rejects for ever).
        try:
            self._take_change()
        except BaseException:
            if result != REJECTED:
                self.record_c(result, IGNORED, 0, now)
            raise
        return 0

    @cython.final
    cdef int record_c(self, int64_t generation, int outcome,
                      int64_t duration_ns, int64_t now) except -1:
        self._check_ready()
        if machine_record(&self.machine, generation, outcome, duration_ns,
                          now) == NEED_NOW:
            now = self._clock_or_release(generation)
            machine_record(&self.machine, generation, outcome, duration_ns, now)
        if self.machine.changed_from >= 0:
            self._take_change()
        return 0

    @cython.final
    cdef int64_t _clock_or_release(self, int64_t generation) except -2:
        # Reads the clock for a permit's call; if the clock raises, the
        # permit is given back (a half-open probe must not leak) and the
        # error propagates. Only an injected clock can raise.
        if self._clock is None:
            return monotonic_ns()
        try:
            return check_now(self._clock())
        except BaseException:
            machine_record(&self.machine, generation, IGNORED, 0, UNKNOWN_NOW)
            raise

    @cython.final
    cdef inline int64_t start_c(self, int64_t generation) except -2:
        # The start time of a guarded call, read only if durations matter;
        # UNTIMED (-1, never a clock reading) otherwise.
        return self._clock_or_release(generation) if self._timed else -1

    @cython.final
    cdef int finish_c(self, int64_t generation, int outcome,
                      int64_t start_ns) except -1:
        cdef int64_t now, duration
        # A call started before slow-call tracking was switched on has no
        # duration: it is recorded as not slow.
        if self._timed and start_ns >= 0:
            now = self._clock_or_release(generation)
            duration = now - start_ns
            return self.record_c(generation, outcome,
                                 duration if duration > 0 else 0, now)
        return self.record_c(generation, outcome, 0, UNKNOWN_NOW)

    cdef int _take_change(self) except -1:
        # Right after a step: queue its state change for the listeners and
        # deliver, unless a caller up the stack or in another thread is
        # delivering already. Reading and clearing changed_from happen before
        # anything can run Python code, so no other step can intervene.
        # A re-entry (X -> X) restarts the state but, as in Resilience4j,
        # is no transition: no listener hears of it.
        cdef int old = self.machine.changed_from
        cdef int via = self.machine.changed_via
        cdef int new = self.machine.state
        self.machine.changed_from = self.machine.changed_via = -1
        if not self._listeners:
            return 0
        if via >= 0:
            if old != via:
                self._events.append((old, via))
            old = via
        if old != new:
            self._events.append((old, new))
        if self._delivering or not self._events:
            return 0
        self._delivering = True
        self._deliver()
        return 0

    cdef int _deliver(self) except -1:
        # Runs the listeners until no change is queued; changes made
        # meanwhile (also by a listener) are delivered in order.
        try:
            while self._events:
                old, new = self._events.popleft()
                for listener in tuple(self._listeners):
                    try:
                        listener(self, State(old), State(new))
                    except Exception:
                        logger.exception(
                            "listener %r of circuit breaker %r failed",
                            listener, self._name)
        finally:
            self._delivering = False
        return 0

    # --- two-step API ----------------------------------------------------

    def try_acquire(self, now=None):
        """`try_acquire` returns a :class:`Permit` if a call may go ahead now,
        else None (counted as rejected; see `retry_after`). Report the call's
        outcome on the permit exactly once."""
        cdef int64_t at = UNKNOWN_NOW if now is None else check_now(now)
        cdef int64_t generation = self.acquire_c(&at)
        if generation == REJECTED:
            return None
        return self._permit_of(generation)

    def permit_or_error(self, now=None):
        """`permit_or_error` is `try_acquire` that answers a rejection with
        its CircuitOpenError (returned, not raised), whose retry_after uses
        the time the decision used: no second clock read."""
        cdef int64_t at = given_now(now)
        cdef int64_t generation = self.acquire_c(&at)
        if generation == REJECTED:
            return self.open_error_c(at)
        return self._permit_of(generation)

    @cython.final
    cdef Permit _permit_of(self, int64_t generation):
        # The shared permit of a generation.
        cdef Permit permit = self._permit
        if permit is None or permit.generation != generation:
            permit = Permit.__new__(Permit)
            permit._core = self
            permit.generation = generation
            self._permit = permit
        return permit

    def retry_after(self, now=None):
        """`retry_after` is the seconds a rejected call should wait: the rest
        of the OPEN wait (0.0 once over), ``inf`` if FORCED_OPEN, else 0.0."""
        return ns_to_seconds(self._retry_after_ns(given_now(now)))

    @cython.final
    cdef int64_t _retry_after_ns(self, int64_t now) except -3:
        cdef int64_t left = machine_retry_after_ns(&self.machine, now)
        if left == NEED_NOW:
            left = machine_retry_after_ns(&self.machine, self._read_clock())
        return left

    def open_error(self, now=None):
        """`open_error` is the CircuitOpenError for a call rejected now."""
        return self.open_error_c(given_now(now))

    @cython.final
    cdef object open_error_c(self, int64_t now):
        error = CircuitOpenError(self._name,
                                 ns_to_seconds(self._retry_after_ns(now)))
        hook = _span_hooks[1]  # ON_REJECTED (checked at import)
        if hook is not None:
            hook(error)
        return error

    def guarded(self, function, fallback=None, *, bint wraps=True):
        """`guarded` wraps a sync ``function`` so that every call goes through
        the breaker; ``fallback`` None means the breaker's fallback. ``wraps``
        False skips copying the function's name and doc (for a wrapper used
        once)."""
        guarded = GuardedFunction(
            self, function, self._fallback if fallback is None else fallback)
        if wraps:
            functools.update_wrapper(guarded, function)
        return guarded

    # --- manual control --------------------------------------------------

    def transition_to(self, state, now=None):
        """`transition_to` enters ``state`` by hand in a new generation.

        Raises IllegalTransitionError for a move the table forbids (CLOSED
        to HALF_OPEN). Entering CLOSED empties the window and resets the
        wait; entering OPEN or FORCED_OPEN (also from OPEN: it restarts)
        takes the base wait if the breaker has not opened since CLOSED or
        DISABLED, else grows it by the backoff, and OPEN starts it at
        ``now``. A re-entry (OPEN to OPEN, say) is no transition for the
        listeners.
        """
        cdef int target = State(state)
        cdef int64_t at = given_now(now)
        self._check_ready()
        cdef int source = self.machine.state
        cdef int result = machine_transition(&self.machine, target, at)
        if result == NEED_NOW:
            at = self._read_clock()
            source = self.machine.state
            result = machine_transition(&self.machine, target, at)
        if self.machine.changed_from >= 0:
            self._take_change()
        if result == ILLEGAL:
            raise IllegalTransitionError(State(source), State(target))

    cdef int _adopt(self, config, spec) except -1:
        # The config-derived attributes the steps read.
        self._config = config
        self._spec = spec
        self._record_exceptions = config.record_exceptions
        self._ignore_exceptions = config.ignore_exceptions
        self._exception_predicate = config.exception_predicate
        self._result_predicate = config.result_predicate
        self._timed = spec.slow_call_ns > 0
        return 0

    def reconfigure(self, config):
        """`reconfigure` makes ``config`` the breaker's rules from the next
        step on, in one atomic step: the state, generation, counters and
        listeners stay. The window keeps its outcomes if its type, size and
        bucket are unchanged, else starts empty. An OPEN wait not grown by
        backoff becomes the new wait_duration; a grown one is capped by the
        new max_wait_duration. A call already running when slow-call
        tracking is switched on has no start time: it is recorded as not
        slow.
        Raises TypeError for a non-BreakerConfig, and then nothing changes.
        """
        self._check_ready()
        if not isinstance(config, BreakerConfig):
            raise TypeError(f"config must be a BreakerConfig, got {config!r}")
        spec = config.to_spec()
        machine_respec(&self.machine, spec)
        self._adopt(config, spec)

    def counters(self):
        """`counters` snapshots the calls, outcomes and state changes counted
        since construction (see ratefuse.core.counters.BreakerCounters)."""
        self._check_ready()
        cdef Machine* machine = &self.machine
        return BreakerCounters(
            machine.permitted, machine.successes, machine.failures,
            machine.slow_calls, machine.rejected_total,
            (machine.entered[0], machine.entered[1], machine.entered[2],
             machine.entered[3], machine.entered[4]),
        )

    def reset(self):
        """`reset` closes the breaker as if new: empty window, base wait,
        rejected count 0, a new generation. Resetting a CLOSED breaker
        calls no listener (Resilience4j's RESET event has no counterpart)."""
        self._check_ready()
        machine_reset(&self.machine)
        self._take_change()

    def counts(self, now=None):
        """`counts` is (state, generation, calls, failures, slow, rejected,
        probes): the state's tally (see Shown: the window, the last probe
        round, or nothing), the rejections since the state began (OPEN
        continues its predecessor's count), and permits issued in the
        current probe round. Like `state`, it shows the last step's state
        (a probe round past its deadline re-opens at the next step)."""
        cdef int64_t at = given_now(now)
        self._check_ready()
        if machine_advance(&self.machine, at) == NEED_NOW:
            machine_advance(&self.machine, self._read_clock())
        cdef Machine* machine = &self.machine
        cdef int64_t probes = (machine.probes_issued
                               if machine.state == HALF_OPEN else 0)
        if machine.shown == SHOWN_PROBES:
            return (machine.state, machine.generation, machine.probe_calls,
                    machine.probe_failures, machine.probe_slow,
                    machine.rejected, probes)
        if machine.shown == SHOWN_WINDOW:
            return (machine.state, machine.generation, machine.window.calls,
                    machine.window.failures, machine.window.slow,
                    machine.rejected, probes)
        return (machine.state, machine.generation, 0, 0, 0,
                machine.rejected, probes)

    # --- listeners and classification -----------------------------------

    def add_listener(self, listener):
        """`add_listener` calls ``listener(breaker, old, new)`` after every
        state change (old != new; a re-entry is none), outside the
        breaker's critical section (it may call the breaker). Exceptions it
        raises are logged, not propagated."""
        self._listeners.append(listener)

    def remove_listener(self, listener):
        """`remove_listener` removes ``listener``; ValueError if absent."""
        self._listeners.remove(listener)

    def classify_exception(self, exc):
        """`classify_exception` is the outcome (SUCCESS, FAILURE, IGNORED) of
        a call that raised ``exc``; see the class doc."""
        return self.classify_exception_c(exc)

    cdef int classify_exception_c(self, exc) except -1:
        if not isinstance(exc, Exception) or isinstance(exc,
                                                        self._ignore_exceptions):
            return IGNORED
        if not isinstance(exc, self._record_exceptions):
            return SUCCESS
        if self._exception_predicate is None or self._exception_predicate(exc):
            return FAILURE
        return SUCCESS

    def classify_result(self, result):
        """`classify_result` is the outcome of a call that returned
        ``result``: FAILURE if the result predicate says so, else SUCCESS."""
        return self.classify_result_c(result)

    cdef int classify_result_c(self, result) except -1:
        if self._result_predicate is not None and self._result_predicate(result):
            return FAILURE
        return SUCCESS

    cdef int record_exception_c(self, int64_t generation, exc,
                                int64_t start_ns) except -1:
        # Records a call that raised; if the predicate itself raises, the
        # call is recorded as IGNORED (freeing a probe) and that error wins.
        cdef int outcome
        try:
            outcome = self.classify_exception_c(exc)
        except BaseException:
            self.finish_c(generation, IGNORED, start_ns)
            raise
        return self.finish_c(generation, outcome, start_ns)

    @cython.final
    cdef int record_result_c(self, int64_t generation, result,
                             int64_t start_ns) except -1:
        cdef int outcome
        if self._result_predicate is None:
            return self.finish_c(generation, SUCCESS, start_ns)
        try:
            outcome = self.classify_result_c(result)
        except BaseException:
            self.finish_c(generation, IGNORED, start_ns)
            raise
        return self.finish_c(generation, outcome, start_ns)


@cython.final
@cython.freelist(8)
cdef class Permit:
    """`Permit` lets one call go ahead; report its outcome exactly once with
    `on_success`, `on_error`, `on_result` or `release`.

    ``duration`` is the call's duration in seconds (it decides whether the
    call was slow; pass 0.0 when the breaker is not `timed`). ``now`` is
    the completion time in ns; None reads the clock if a step needs it.
    Permits of one generation are one shared object; an outcome reported
    after the breaker changed state is ignored. Thread-safe.
    """

    def __init__(self, BreakerCore core not None, int64_t generation):
        self._core = core
        self.generation = generation

    def on_success(self, double duration, now=None):
        """`on_success` records a call that returned normally."""
        self._core.record_c(self.generation, SUCCESS, duration_to_ns(duration),
                            given_now(now))

    def on_error(self, double duration, exc, now=None):
        """`on_error` records a call that raised ``exc``, classified by the
        breaker's exception rules."""
        self._classified(False, exc, duration_to_ns(duration), given_now(now))

    def on_result(self, double duration, result, now=None):
        """`on_result` records a call that returned ``result``, classified by
        the breaker's result predicate."""
        self._classified(True, result, duration_to_ns(duration), given_now(now))

    cdef int _classified(self, bint is_result, value, int64_t duration_ns,
                         int64_t now) except -1:
        # Records the outcome of a result or an exception; if the predicate
        # raises, the call is recorded as IGNORED (freeing a probe) and that
        # error wins.
        cdef int outcome
        try:
            outcome = (self._core.classify_result_c(value) if is_result
                       else self._core.classify_exception_c(value))
        except BaseException:
            self._core.record_c(self.generation, IGNORED, duration_ns, now)
            raise
        return self._core.record_c(self.generation, outcome, duration_ns, now)

    def release(self, now=None):
        """`release` gives the permit back unused: nothing is recorded, and
        a half-open probe slot is freed."""
        self._core.record_c(self.generation, IGNORED, 0, given_now(now))

    def __repr__(self):
        return f"Permit(breaker={self._core.name!r}, generation={self.generation})"


cdef extern from *:
    """
    /* Lets instances of `type` be called through the vectorcall protocol,
       with the function pointer stored `offset` bytes into each instance:
       the guarded call then receives its arguments as the caller's array,
       with no tuple or dict built, like a plain Python function. */
    static void ratefuse_enable_vectorcall(PyTypeObject *type,
                                           Py_ssize_t offset) {
        type->tp_vectorcall_offset = offset;
        type->tp_flags |= Py_TPFLAGS_HAVE_VECTORCALL;
    }
    """
    ctypedef PyObject* (*vectorcallfunc)(PyObject*, PyObject* const*, size_t,
                                         PyObject*)
    void ratefuse_enable_vectorcall(PyTypeObject* type, Py_ssize_t offset)
    object PyObject_Vectorcall(object, PyObject* const*, size_t, PyObject*)
    object PyVectorcall_Call(object, object, object)
    void PyErr_SetObject(object, object)


@cython.final
cdef class GuardedFunction:
    """`GuardedFunction` calls ``function`` through ``core``: rejected calls
    return ``fallback(*args, **kwargs)`` if a fallback is given, else raise
    CircuitOpenError; permitted ones are timed if the breaker is `timed`
    and their outcome recorded. Binds like a function when used as a method;
    `BreakerCore.guarded` also copies the function's name and doc onto it.
    Thread-safe.
    """

    cdef vectorcallfunc _vectorcall
    cdef BreakerCore _core
    cdef object _function
    cdef object _fallback
    cdef dict __dict__
    cdef object __weakref__

    def __init__(self, BreakerCore core not None, function, fallback=None):
        self._core = core
        self._function = function
        self._fallback = fallback
        self._vectorcall = <vectorcallfunc>guarded_vectorcall

    @property
    def breaker(self):
        """`breaker` is the breaker guarding the function."""
        return self._core

    def __call__(self, *args, **kwargs):
        # Reached only through PyObject_Call (a tuple and a dict); every other
        # call goes straight to guarded_vectorcall.
        return PyVectorcall_Call(self, args, kwargs)

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __reduce__(self):
        # Pickled by reference, like the function it replaces (guarded()
        # copied that function's name onto it).
        return self.__qualname__

    def __repr__(self):
        return f"<GuardedFunction {self._function!r} by {self._core.name!r}>"


cdef PyObject* guarded_vectorcall(GuardedFunction self, PyObject* const* args,
                                  size_t nargsf, PyObject* kwnames) except NULL:
    # The decorator's hot path. A rejection sets CircuitOpenError and returns
    # NULL itself, so no C traceback entry is built for it.
    cdef BreakerCore core = self._core
    cdef int64_t now = UNKNOWN_NOW
    cdef int64_t generation = core.acquire_c(&now)
    cdef object result
    if generation == REJECTED:
        if self._fallback is not None:
            result = PyObject_Vectorcall(self._fallback, args, nargsf, kwnames)
            Py_INCREF(result)
            return <PyObject*>result
        PyErr_SetObject(CircuitOpenError, core.open_error_c(now))
        return NULL
    cdef int64_t start_ns = core.start_c(generation)
    try:
        result = PyObject_Vectorcall(self._function, args, nargsf, kwnames)
    except BaseException as exc:
        core.record_exception_c(generation, exc, start_ns)
        raise
    core.record_result_c(generation, result, start_ns)
    Py_INCREF(result)
    return <PyObject*>result


cdef Py_ssize_t vectorcall_offset(GuardedFunction probe):
    return <Py_ssize_t>(<char*>&probe._vectorcall - <char*><void*>probe)


ratefuse_enable_vectorcall(<PyTypeObject*>GuardedFunction,
                           vectorcall_offset(GuardedFunction.__new__(GuardedFunction)))
