"""What a fleet breaker shares with a local one: the call forms and the
listeners, as a mixin over the few steps :class:`FleetBreaker` provides.

The forms of :mod:`ratefuse.breaker` (`Guard`, `guard_async`, the
reference `GuardedFunction`) call a core's private steps by name
(``_acquire``, ``_start``, ``_finish``, ``_guard_exception``,
``_guard_result``, ``_open_error``); `FleetForms` provides them on top of
`try_acquire`, so a fleet breaker has exactly the forms of a local one.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar, cast, overload

from ratefuse.breaker import CircuitBreaker, Guard, Permit, guard_async
from ratefuse.core.breaker._fleet_recorder_py import SLOW_BIT, outcome_flags
from ratefuse.core.breaker.fleet_recorder import FleetPermit, Recorder
from ratefuse.core.breaker.spec import IGNORED, REJECTED, UNKNOWN_NOW, State
from ratefuse.core.errors import CircuitOpenError
from ratefuse.engine._breaker_call_py import GuardedFunction
from ratefuse.redis._fleet_stats import FleetCounters

P = ParamSpec("P")
R = TypeVar("R")

# Listener is called as listener(breaker, old_state, new_state).
Listener = Callable[[Any, State, State], object]

HALF_OPEN = int(State.HALF_OPEN)

logger = logging.getLogger("ratefuse.breaker")


class FleetForms:
    """`FleetForms` gives a fleet breaker the listeners of
    :class:`ratefuse.CircuitBreaker` and the steps that record a guarded
    call's outcome. The subclass sets the attributes below in its
    ``__init__`` and implements `open_error`."""

    _local: CircuitBreaker
    _recorder: Recorder
    _counters: FleetCounters
    _slow_call_ns: int
    _state: int
    _fallen_back: bool
    _listeners: list[Listener]
    _events: deque[tuple[int, int]]
    _events_lock: threading.Lock
    _delivering: bool

    def open_error(self, now: int | None = None) -> CircuitOpenError:
        raise NotImplementedError

    @property
    def name(self) -> str:
        """`name` names the breaker in errors, logs and its Redis keys."""
        return self._local.name

    @property
    def fallback(self) -> Callable[..., Any] | None:
        """`fallback` answers rejected calls instead of CircuitOpenError."""
        return self._local.fallback

    def now_ns(self) -> int:
        """`now_ns` reads the breaker's local clock (its local breaker's)."""
        return self._local.now_ns()

    # --- listeners ---------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """`add_listener` calls ``listener(breaker, old, new)`` after every
        state change this process sees, outside any lock."""
        with self._events_lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        """`remove_listener` removes ``listener``; ValueError if absent."""
        with self._events_lock:
            self._listeners.remove(listener)

    def _relay(self, local: object, old: State, new: State) -> None:
        # The local breaker's changes matter only while it decides.
        if self._fallen_back:
            self._queue_event(int(old), int(new))
            self._deliver()

    def _queue_event(self, old: int, new: int) -> None:
        self._counters.add("transitions")
        with self._events_lock:
            if self._listeners:
                self._events.append((old, new))

    def _deliver(self) -> None:
        # Runs the listeners until no change is queued, one thread at a time
        # so that they see changes in order.
        with self._events_lock:
            if self._delivering or not self._events:
                return
            self._delivering = True
        while True:
            with self._events_lock:
                if not self._events:
                    self._delivering = False
                    return
                old, new = self._events.popleft()
                listeners = tuple(self._listeners)
            for listener in listeners:
                try:
                    listener(self, State(old), State(new))
                except Exception:
                    logger.exception(
                        "listener %r of fleet breaker %r failed", listener, self.name
                    )

    # --- the steps the forms call (as on a BreakerCore) ---------------------

    def classify_exception(self, exc: BaseException) -> int:
        """`classify_exception` is the outcome of a call that raised ``exc``
        (SUCCESS, FAILURE or IGNORED), by the config's rules."""
        return self._local.classify_exception(exc)

    def classify_result(self, result: object) -> int:
        """`classify_result` is the outcome of a call that returned
        ``result``, by the config's result predicate."""
        return self._local.classify_result(result)

    @staticmethod
    def _generation_of(permit: FleetPermit | Permit) -> int:
        # The generation the steps below take: a local breaker's permit's
        # is negated, so that _record can tell the two apart.
        if isinstance(permit, FleetPermit):
            return permit.generation
        return -permit.generation

    def _record(self, generation: int, outcome: int, duration_ns: int) -> None:
        if generation < 0:
            self._local._record(-generation, outcome, duration_ns)
            return
        slow = self._slow_call_ns > 0 and duration_ns > self._slow_call_ns
        self._recorder.push(generation, outcome_flags(outcome, SLOW_BIT * slow))
        if self._state == HALF_OPEN:
            self._recorder.wake()

    def _start(self) -> int:
        return self.now_ns() if self._slow_call_ns else 0

    def _finish(self, generation: int, outcome: int, start_ns: int) -> None:
        duration = max(self.now_ns() - start_ns, 0) if self._slow_call_ns else 0
        self._record(generation, outcome, duration)

    def _guard_exception(
        self, generation: int, exc: BaseException, start_ns: int
    ) -> None:
        try:
            outcome = self.classify_exception(exc)
        except BaseException:
            self._finish(generation, IGNORED, start_ns)
            raise
        self._finish(generation, outcome, start_ns)

    def _guard_result(self, generation: int, result: object, start_ns: int) -> None:
        try:
            outcome = self.classify_result(result)
        except BaseException:
            self._finish(generation, IGNORED, start_ns)
            raise
        self._finish(generation, outcome, start_ns)


class SyncFleetForms(FleetForms):
    """`SyncFleetForms` adds the forms of a sync breaker (the decorator for
    sync and async functions, ``guard``, ``call``) on top of a sync
    `try_acquire`, through the forms of :mod:`ratefuse.breaker`."""

    def try_acquire(self, now: int | None = None) -> FleetPermit | Permit | None:
        raise NotImplementedError

    def _acquire(self, now: int | None = None) -> tuple[int, int]:
        # (generation or REJECTED, the now used or UNKNOWN_NOW); a local
        # breaker's generation is negated so that _record can tell them apart.
        permit = self.try_acquire(now)
        at = UNKNOWN_NOW if now is None else now
        if permit is None:
            return REJECTED, at
        return self._generation_of(permit), at

    def _open_error(self, now: int) -> CircuitOpenError:
        return self.open_error(None if now == UNKNOWN_NOW else now)

    # --- forms -------------------------------------------------------------

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """`__call__` makes the breaker a decorator: see `decorate`."""
        return self.decorate(function)

    @overload
    def decorate(
        self, function: Callable[P, R], *, fallback: Callable[..., Any] | None = None
    ) -> Callable[P, R]: ...

    @overload
    def decorate(
        self, function: None = None, *, fallback: Callable[..., Any] | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def decorate(
        self,
        function: Callable[P, R] | None = None,
        *,
        fallback: Callable[..., Any] | None = None,
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """`decorate` wraps ``function`` (sync or async) so that every call
        goes through the breaker; ``fallback`` None means the breaker's.
        Without ``function`` it returns the decorator."""
        if function is None:
            return functools.partial(self.decorate, fallback=fallback)
        chosen = self.fallback if fallback is None else fallback
        if inspect.iscoroutinefunction(function):
            return cast(Callable[P, R], guard_async(self._as_core(), function, chosen))
        guarded = GuardedFunction(self._as_core(), function, chosen)
        functools.update_wrapper(guarded, function)
        return guarded

    def call(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`call` calls ``function(*args, **kwargs)`` through the breaker; for
        a coroutine function it returns the awaitable."""
        if inspect.iscoroutinefunction(function):
            guarded = guard_async(self._as_core(), function, self.fallback)
            return cast(R, guarded(*args, **kwargs))
        return GuardedFunction(self._as_core(), function, self.fallback)(
            *args, **kwargs
        )

    def guard(self) -> Guard:
        """`guard` is a one-use context manager (sync or async) for a block."""
        return Guard(self._as_core())

    def _as_core(self) -> Any:
        # The forms of ratefuse.breaker call the core's private steps by
        # name; this class provides them (_acquire, _start, _finish, ...).
        return self
