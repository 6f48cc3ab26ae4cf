"""The circuit breaker core, reference implementation: the spec of ``_breaker_c``.

`BreakerCore` wraps the pure state machine
(:mod:`ratefuse.core.breaker._machine_py`) with what a live breaker needs: a
clock read only when a step needs the time, a lock, the classification of
exceptions and results, the two-step :class:`Permit` API, the sync decorator
(the shared :class:`ratefuse.engine.breaker_forms.GuardedFunction`) and
state-change listeners. It is the base class of the public
:class:`ratefuse.CircuitBreaker`; the compiled twin has the same names,
signatures, errors and decisions, and calls the clock the same number of
times.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

from ratefuse.core.args import check_now
from ratefuse.core.breaker._machine_py import Machine
from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.core.breaker.spec import (
    FAILURE,
    IGNORED,
    ILLEGAL,
    NEED_NOW,
    REJECTED,
    SUCCESS,
    UNKNOWN_NOW,
    BreakerSpec,
    IllegalTransitionError,
    Listener,
    Shown,
    State,
    duration_to_ns,
    ns_to_seconds,
)
from ratefuse.core.counters import BreakerCounters
from ratefuse.core.errors import CircuitOpenError
from ratefuse.core.span_hooks import ON_REJECTED, SPAN_HOOKS
from ratefuse.engine.breaker_forms import GuardedFunction, guarded_function
from ratefuse.engine.log_events import log_transition

P = ParamSpec("P")
R = TypeVar("R")

ExceptionTypes = tuple[type[BaseException], ...]

logger = logging.getLogger("ratefuse.breaker")


class BreakerCore:
    """`BreakerCore` decides whether calls may go ahead and learns from their
    outcomes, by the rules of ``config`` (None: the defaults).

    ``name`` names it in errors and logs. ``fallback`` (None: raise
    CircuitOpenError) is called with a rejected call's arguments by the
    guarded forms. ``listeners`` are added as by `add_listener`, after
    the log listener (`ratefuse.engine.log_events.log_transition`).
    ``clock`` returns integer nanoseconds; None means the monotonic clock.
    It is read only when a step needs the time. Methods taking ``now`` use it
    instead of the clock when given. Exceptions count as failures when they
    are instances of ``record_exceptions`` and not of ``ignore_exceptions``
    and ``exception_predicate`` (None: always) returns true; other
    exceptions count as successes (the call was answered), except
    non-Exception BaseExceptions (cancellation, KeyboardInterrupt) and
    ignored ones, which are not recorded. ``result_predicate`` (None: never)
    returns true for a result that counts as a failure.
    Thread-safe: every step is atomic, and listeners run outside it.
    """

    def __init__(
        self,
        name: str = "breaker",
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], int] | None = None,
        fallback: Callable[..., Any] | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        config = BreakerConfig() if config is None else config
        if not isinstance(config, BreakerConfig):
            raise TypeError(f"config must be a BreakerConfig, got {config!r}")
        spec = config.to_spec()
        self._machine = Machine(spec)
        self._name = str(name)
        self._clock = clock
        self._fallback = fallback
        self._adopt(config, spec)
        self._lock = threading.Lock()
        # The log listener first: a transition is logged before user code runs.
        self._listeners: list[Listener] = [log_transition, *listeners]
        self._events: deque[tuple[int, int]] = deque()
        self._delivering = False
        self._permit: Permit | None = None

    @property
    def name(self) -> str:
        """`name` names the breaker in errors and logs."""
        return self._name

    @property
    def config(self) -> BreakerConfig:
        """`config` is the breaker's rules."""
        return self._config

    @property
    def fallback(self) -> Callable[..., Any] | None:
        """`fallback` is called with a rejected call's arguments, and its
        result returned, instead of raising CircuitOpenError; None: raise."""
        return self._fallback

    @property
    def spec(self) -> BreakerSpec:
        """`spec` is the lowered config the breaker decides with."""
        return self._spec

    @property
    def clock(self) -> Callable[[], int] | None:
        """`clock` is the injected clock, or None for the monotonic clock."""
        return self._clock

    @property
    def state(self) -> State:
        """`state` is the current state. An OPEN breaker whose wait is over
        still reads OPEN until a call arrives and turns it HALF_OPEN."""
        return State(self._machine.state)

    @property
    def generation(self) -> int:
        """`generation` counts state changes, starting at 1."""
        return self._machine.generation

    @property
    def timed(self) -> bool:
        """`timed` is true when call durations matter (slow-call tracking is
        on); callers of the two-step API may pass 0.0 otherwise."""
        return self._timed

    def now_ns(self) -> int:
        """`now_ns` reads the breaker's clock."""
        if self._clock is None:
            return time.monotonic_ns()
        return check_now(self._clock())

    # --- steps -----------------------------------------------------------

    def _acquire(self, now: int | None = None) -> tuple[int, int]:
        # Returns (generation or REJECTED, the now used or UNKNOWN_NOW).
        at = UNKNOWN_NOW if now is None else check_now(now)
        with self._lock:
            result = self._machine.acquire(at)
            changed = self._take_change()
        if result == NEED_NOW:
            at = self.now_ns()
            with self._lock:
                result = self._machine.acquire(at)
                changed = self._take_change()
        if changed:
            try:
                self._deliver()
            except BaseException:
                # A listener raised KeyboardInterrupt or the like: the caller
                # never sees the permit, so give it back (else a probe leaks
                # and HALF_OPEN rejects for ever).
                if result != REJECTED:
                    self._record(result, IGNORED, 0, at)
                raise
        return result, at

    def _record(
        self, generation: int, outcome: int, duration_ns: int, now: int | None = None
    ) -> None:
        at = UNKNOWN_NOW if now is None else check_now(now)
        with self._lock:
            result = self._machine.record(generation, outcome, duration_ns, at)
            changed = self._take_change()
        if result == NEED_NOW:
            try:
                at = self.now_ns()
            except BaseException:
                # The outcome is lost with the clock; free the permit at least.
                with self._lock:
                    self._machine.record(generation, IGNORED, 0, UNKNOWN_NOW)
                raise
            with self._lock:
                self._machine.record(generation, outcome, duration_ns, at)
                changed = self._take_change()
        if changed:
            self._deliver()

    def _take_change(self) -> bool:
        # Under the lock: queue the step's state change for the listeners;
        # true if this caller must deliver (nobody else is delivering).
        # A re-entry (X -> X) restarts the state but, as in Resilience4j,
        # is no transition: no listener hears of it.
        machine = self._machine
        if machine.changed_from < 0:
            return False
        if self._listeners:
            old, via, new = machine.changed_from, machine.changed_via, machine.state
            for pair in ((old, via), (via, new)) if via >= 0 else ((old, new),):
                if pair[0] != pair[1]:
                    self._events.append(pair)
        machine.changed_from = machine.changed_via = -1
        if self._delivering or not self._events:
            return False
        self._delivering = True
        return True

    def _deliver(self) -> None:
        # Runs the listeners, outside the lock, until no change is queued;
        # changes made meanwhile (also by a listener) are delivered in order.
        while True:
            with self._lock:
                if not self._events:
                    self._delivering = False
                    return
                old, new = self._events.popleft()
                listeners = tuple(self._listeners)
            try:
                for listener in listeners:
                    try:
                        listener(self, State(old), State(new))
                    except Exception:
                        logger.exception(
                            "listener %r of circuit breaker %r failed",
                            listener,
                            self._name,
                        )
            except BaseException:
                # KeyboardInterrupt and the like propagate; the next change
                # resumes delivery of what is still queued.
                with self._lock:
                    self._delivering = False
                raise

    # --- two-step API ----------------------------------------------------

    def try_acquire(self, now: int | None = None) -> Permit | None:
        """`try_acquire` returns a :class:`Permit` if a call may go ahead now,
        else None (counted as rejected; see `retry_after`). Report the call's
        outcome on the permit exactly once."""
        generation = self._acquire(now)[0]
        if generation == REJECTED:
            return None
        return self._permit_of(generation)

    def permit_or_error(self, now: int | None = None) -> Permit | CircuitOpenError:
        """`permit_or_error` is `try_acquire` that answers a rejection with
        its CircuitOpenError (returned, not raised), whose retry_after uses
        the time the decision used: no second clock read."""
        generation, at = self._acquire(now)
        if generation == REJECTED:
            return self.open_error(None if at == UNKNOWN_NOW else at)
        return self._permit_of(generation)

    def _permit_of(self, generation: int) -> Permit:
        # The shared permit of a generation.
        permit = self._permit
        if permit is None or permit.generation != generation:
            permit = self._permit = Permit(self, generation)
        return permit

    def retry_after(self, now: int | None = None) -> float:
        """`retry_after` is the seconds a rejected call should wait: the rest
        of the OPEN wait (0.0 once over), ``inf`` if FORCED_OPEN, else 0.0."""
        at = UNKNOWN_NOW if now is None else check_now(now)
        with self._lock:
            left = self._machine.retry_after_ns(at)
        if left == NEED_NOW:
            at = self.now_ns()
            with self._lock:
                left = self._machine.retry_after_ns(at)
        return ns_to_seconds(left)

    def open_error(self, now: int | None = None) -> CircuitOpenError:
        """`open_error` is the CircuitOpenError for a call rejected now."""
        error = CircuitOpenError(self._name, self.retry_after(now))
        hook = SPAN_HOOKS[ON_REJECTED]
        if hook is not None:
            hook(error)
        return error

    def guarded(
        self,
        function: Callable[P, R],
        fallback: Callable[P, R] | None = None,
        *,
        wraps: bool = True,
    ) -> GuardedFunction[P, R]:
        """`guarded` wraps a sync ``function`` so that every call goes through
        the breaker; ``fallback`` None means the breaker's fallback. ``wraps``
        False skips copying the function's name and doc (for a wrapper used
        once)."""
        return guarded_function(self, function, fallback, wraps=wraps)

    # --- manual control --------------------------------------------------

    def transition_to(self, state: State, now: int | None = None) -> None:
        """`transition_to` enters ``state`` by hand in a new generation.

        Raises IllegalTransitionError for a move the table forbids (CLOSED
        to HALF_OPEN). Entering CLOSED empties the window and resets the
        wait; entering OPEN or FORCED_OPEN (also from OPEN: it restarts)
        takes the base wait if the breaker has not opened since CLOSED or
        DISABLED, else grows it by the backoff, and OPEN starts it at
        ``now``. A re-entry (OPEN to OPEN, say) is no transition for the
        listeners.
        """
        target = int(State(state))
        at = UNKNOWN_NOW if now is None else check_now(now)
        with self._lock:
            source = self._machine.state
            result = self._machine.transition(target, at)
            changed = self._take_change()
        if result == NEED_NOW:
            at = self.now_ns()
            with self._lock:
                source = self._machine.state
                result = self._machine.transition(target, at)
                changed = self._take_change()
        if changed:
            self._deliver()
        if result == ILLEGAL:
            raise IllegalTransitionError(State(source), State(target))

    def _adopt(self, config: BreakerConfig, spec: BreakerSpec) -> None:
        # The config-derived attributes the steps read.
        self._config = config
        self._spec = spec
        self._record_exceptions = config.record_exceptions
        self._ignore_exceptions = config.ignore_exceptions
        self._exception_predicate = config.exception_predicate
        self._result_predicate = config.result_predicate
        self._timed = spec.slow_call_ns > 0

    def reconfigure(self, config: BreakerConfig) -> None:
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
        if not isinstance(config, BreakerConfig):
            raise TypeError(f"config must be a BreakerConfig, got {config!r}")
        spec = config.to_spec()
        with self._lock:
            self._machine.respec(spec)
            self._adopt(config, spec)

    def counters(self) -> BreakerCounters:
        """`counters` snapshots the calls, outcomes and state changes counted
        since construction (see :class:`ratefuse.core.counters.BreakerCounters`)."""
        with self._lock:
            machine = self._machine
            entered = machine.entered
            return BreakerCounters(
                machine.permitted,
                machine.successes,
                machine.failures,
                machine.slow_calls,
                machine.rejected_total,
                (entered[0], entered[1], entered[2], entered[3], entered[4]),
            )

    def reset(self) -> None:
        """`reset` closes the breaker as if new: empty window, base wait,
        rejected count 0, a new generation. Resetting a CLOSED breaker
        calls no listener (Resilience4j's RESET event has no counterpart)."""
        with self._lock:
            self._machine.reset()
            changed = self._take_change()
        if changed:
            self._deliver()

    def counts(
        self, now: int | None = None
    ) -> tuple[int, int, int, int, int, int, int]:
        """`counts` is (state, generation, calls, failures, slow, rejected,
        probes): the state's tally (see Shown: the window, the last probe
        round, or nothing), the rejections since the state began (OPEN
        continues its predecessor's count), and permits issued in the
        current probe round. Like `state`, it shows the last step's state
        (a probe round past its deadline re-opens at the next step)."""
        at = UNKNOWN_NOW if now is None else check_now(now)
        machine = self._machine
        with self._lock:
            result = machine.advance(at)
        if result == NEED_NOW:
            at = self.now_ns()
        with self._lock:
            machine.advance(at)
            shown = machine.shown
            if shown == Shown.PROBES:
                calls, failures, slow = (
                    machine.probe_calls,
                    machine.probe_failures,
                    machine.probe_slow,
                )
            elif shown == Shown.WINDOW:
                window = machine.window
                calls, failures, slow = window.calls, window.failures, window.slow
            else:
                calls = failures = slow = 0
            return (
                machine.state,
                machine.generation,
                calls,
                failures,
                slow,
                machine.rejected,
                machine.probes_issued if machine.state == State.HALF_OPEN else 0,
            )

    # --- listeners and classification -----------------------------------

    def add_listener(self, listener: Listener) -> None:
        """`add_listener` calls ``listener(breaker, old, new)`` after every
        state change (old != new; a re-entry is none), outside the
        breaker's critical section (it may call the breaker). Exceptions it
        raises are logged, not propagated."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """`remove_listener` removes ``listener``; ValueError if absent."""
        with self._lock:
            self._listeners.remove(listener)

    def classify_exception(self, exc: BaseException) -> int:
        """`classify_exception` is the outcome (SUCCESS, FAILURE, IGNORED) of
        a call that raised ``exc``; see the class doc."""
        if not isinstance(exc, Exception) or isinstance(exc, self._ignore_exceptions):
            return IGNORED
        if not isinstance(exc, self._record_exceptions):
            return SUCCESS
        predicate = self._exception_predicate
        if predicate is None or predicate(exc):
            return FAILURE
        return SUCCESS

    def classify_result(self, result: object) -> int:
        """`classify_result` is the outcome of a call that returned
        ``result``: FAILURE if the result predicate says so, else SUCCESS."""
        predicate = self._result_predicate
        if predicate is not None and predicate(result):
            return FAILURE
        return SUCCESS


class Permit:
    """`Permit` lets one call go ahead; report its outcome exactly once with
    `on_success`, `on_error`, `on_result` or `release`.

    ``duration`` is the call's duration in seconds (it decides whether the
    call was slow; pass 0.0 when the breaker is not `timed`). ``now`` is
    the completion time in ns; None reads the clock if a step needs it.
    Permits of one generation are one shared object; an outcome reported
    after the breaker changed state is ignored. Thread-safe.
    """

    __slots__ = ("_core", "generation")

    def __init__(self, core: BreakerCore, generation: int) -> None:
        self._core = core
        self.generation = generation

    def on_success(self, duration: float, now: int | None = None) -> None:
        """`on_success` records a call that returned normally."""
        self._core._record(self.generation, SUCCESS, duration_to_ns(duration), now)

    def on_error(
        self, duration: float, exc: BaseException, now: int | None = None
    ) -> None:
        """`on_error` records a call that raised ``exc``, classified by the
        breaker's exception rules."""
        self._classified(self._core.classify_exception, exc, duration, now)

    def on_result(
        self, duration: float, result: object, now: int | None = None
    ) -> None:
        """`on_result` records a call that returned ``result``, classified by
        the breaker's result predicate."""
        self._classified(self._core.classify_result, result, duration, now)

    def _classified(
        self,
        classify: Callable[[Any], int],
        value: Any,
        duration: float,
        now: int | None,
    ) -> None:
        # Records the outcome classify(value); if classify itself raises,
        # the call is recorded as IGNORED (freeing a probe) and that error
        # wins.
        duration_ns = duration_to_ns(duration)
        try:
            outcome = classify(value)
        except BaseException:
            self._core._record(self.generation, IGNORED, duration_ns, now)
            raise
        self._core._record(self.generation, outcome, duration_ns, now)

    def release(self, now: int | None = None) -> None:
        """`release` gives the permit back unused: nothing is recorded, and
        a half-open probe slot is freed."""
        self._core._record(self.generation, IGNORED, 0, now)

    def __repr__(self) -> str:
        return f"Permit(breaker={self._core.name!r}, generation={self.generation})"
