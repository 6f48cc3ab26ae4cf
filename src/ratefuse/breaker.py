"""Circuit breakers with Resilience4j's rules and a compiled state machine.

A :class:`CircuitBreaker` watches the outcomes of calls to a dependency in a
sliding window and, once the failure rate or the slow-call rate reaches its
threshold, opens: calls are rejected at once with CircuitOpenError (or
answered by a fallback) for a wait, after which a bounded round of probes
decides whether to close again::

    breaker = CircuitBreaker("payments", BreakerConfig(failure_rate_threshold=50))

    @breaker
    def charge(order): ...

    @breaker
    async def refund(order): ...

    with breaker.guard():
        ...

    permit = breaker.try_acquire()      # the two-step form
    if permit is not None:
        started = time.perf_counter()
        try:
            response = send()
        except Exception as exc:
            permit.on_error(time.perf_counter() - started, exc)
            raise
        permit.on_success(time.perf_counter() - started)

The decision steps are compiled (``ratefuse.engine._breaker_c``) with a pure-Python
twin as the reference (``ratefuse.engine._breaker_py``); this module adds the
Python-level forms: async decorator, context manager, ``call``, metrics.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast, overload

from ratefuse.core.breaker.config import (
    DEFAULT_BACKOFF_MULTIPLIER,
    DEFAULT_FAILURE_RATE_THRESHOLD,
    DEFAULT_HALF_OPEN_CALLS,
    DEFAULT_IGNORE_EXCEPTIONS,
    DEFAULT_MAX_HALF_OPEN_DURATION,
    DEFAULT_MAX_WAIT_DURATION,
    DEFAULT_MINIMUM_CALLS,
    DEFAULT_RECORD_EXCEPTIONS,
    DEFAULT_SLOW_CALL_DURATION,
    DEFAULT_SLOW_CALL_RATE_THRESHOLD,
    DEFAULT_WAIT_DURATION,
    DEFAULT_WINDOW_BUCKETS,
    DEFAULT_WINDOW_DURATION,
    DEFAULT_WINDOW_SIZE,
    DEFAULT_WINDOW_TYPE,
    BreakerConfig,
)
from ratefuse.core.breaker.spec import REJECTED, SUCCESS, IllegalTransitionError, State
from ratefuse.engine.breaker import BreakerCore, GuardedFunction, Permit

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

__all__ = [
    "DEFAULT_BACKOFF_MULTIPLIER",
    "DEFAULT_FAILURE_RATE_THRESHOLD",
    "DEFAULT_HALF_OPEN_CALLS",
    "DEFAULT_IGNORE_EXCEPTIONS",
    "DEFAULT_MAX_HALF_OPEN_DURATION",
    "DEFAULT_MAX_WAIT_DURATION",
    "DEFAULT_MINIMUM_CALLS",
    "DEFAULT_RECORD_EXCEPTIONS",
    "DEFAULT_SLOW_CALL_DURATION",
    "DEFAULT_SLOW_CALL_RATE_THRESHOLD",
    "DEFAULT_WAIT_DURATION",
    "DEFAULT_WINDOW_BUCKETS",
    "DEFAULT_WINDOW_DURATION",
    "DEFAULT_WINDOW_SIZE",
    "DEFAULT_WINDOW_TYPE",
    "BreakerConfig",
    "BreakerMetrics",
    "CircuitBreaker",
    "Guard",
    "GuardedFunction",
    "IllegalTransitionError",
    "Permit",
    "State",
    "breaker_metrics",
    "guard_async",
]


@dataclass(frozen=True)
class BreakerMetrics:
    """`BreakerMetrics` is a snapshot of a breaker.

    ``calls``, ``failed_calls`` and ``slow_calls`` are the tally that decides
    now: the sliding window, or in HALF_OPEN the current probe round (in
    OPEN, FORCED_OPEN and DISABLED, the window as it was when CLOSED was
    left). ``failure_rate`` and ``slow_call_rate`` are percentages of
    ``calls``, 0.0 when there are none. ``rejected_calls`` counts rejections
    since construction or `reset`; ``probes_issued`` counts the permits of
    the current probe round (0 outside HALF_OPEN). ``generation`` counts
    state changes.
    """

    state: State
    generation: int
    calls: int
    failed_calls: int
    slow_calls: int
    failure_rate: float
    slow_call_rate: float
    rejected_calls: int
    probes_issued: int


def breaker_metrics(core: BreakerCore, now: int | None = None) -> BreakerMetrics:
    """`breaker_metrics` snapshots ``core`` at ``now`` (ns; None: its clock,
    read only for a time-based window)."""
    state, generation, calls, failures, slow, rejected, probes = core.counts(now)
    return BreakerMetrics(
        state=State(state),
        generation=generation,
        calls=calls,
        failed_calls=failures,
        slow_calls=slow,
        failure_rate=100.0 * failures / calls if calls else 0.0,
        slow_call_rate=100.0 * slow / calls if calls else 0.0,
        rejected_calls=rejected,
        probes_issued=probes,
    )


class Guard:
    """`Guard` runs one block through a breaker, as ``with`` or
    ``async with``: entering asks for a permit (raising CircuitOpenError if
    rejected), leaving records the block's outcome (an exception is
    classified by the breaker's rules and propagates). One use only; get a
    new one from `CircuitBreaker.guard` for every block. Not shared between
    threads or tasks.
    """

    __slots__ = ("_core", "_generation", "_start_ns")

    def __init__(self, core: BreakerCore) -> None:
        self._core = core
        self._generation = 0
        self._start_ns = 0

    def __enter__(self) -> Guard:
        if self._generation:
            raise RuntimeError("a Guard can be entered only once")
        generation, now = self._core._acquire()
        if generation == REJECTED:
            raise self._core._open_error(now)
        self._generation = generation
        self._start_ns = self._core._start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc is None:
            self._core._finish(self._generation, SUCCESS, self._start_ns)
        else:
            self._core._guard_exception(self._generation, exc, self._start_ns)

    async def __aenter__(self) -> Guard:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)


def guard_async(
    core: BreakerCore,
    function: Callable[P, Coroutine[Any, Any, T]],
    fallback: Callable[P, Any] | None = None,
) -> Callable[P, Coroutine[Any, Any, T]]:
    """`guard_async` wraps a coroutine function so that every call goes
    through ``core``, like the sync `GuardedFunction`: a rejected call
    returns ``fallback(*args, **kwargs)`` (awaited if awaitable) if given,
    else raises CircuitOpenError. Cancellation records nothing and frees a
    half-open probe."""

    @functools.wraps(function)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        generation, now = core._acquire()
        if generation == REJECTED:
            if fallback is None:
                raise core._open_error(now)
            result = fallback(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return cast(T, result)
        start_ns = core._start()
        try:
            result = await function(*args, **kwargs)
        except BaseException as exc:
            core._guard_exception(generation, exc, start_ns)
            raise
        core._guard_result(generation, result, start_ns)
        return result

    guarded.breaker = core  # type: ignore[attr-defined]
    return guarded


class CircuitBreaker(BreakerCore):
    """`CircuitBreaker` guards calls to one dependency.

    ``CircuitBreaker(name="breaker", config=None, *, clock=None,
    fallback=None, listeners=())``: ``config`` (None: the defaults) holds
    the rules, ``clock`` returns integer ns (None: the monotonic clock, read
    in C by the compiled core, and only when a decision needs the time),
    ``fallback`` answers rejected calls instead of CircuitOpenError, and
    ``listeners`` are called as ``listener(breaker, old, new)`` after each
    state change. Thread-safe and asyncio-safe: decisions are atomic and
    listeners run outside them.

    Forms: ``@breaker`` on sync and async functions, ``with breaker.guard()``
    and ``async with breaker.guard()``, ``breaker.call(fn, *args)``, and
    ``permit = breaker.try_acquire()`` then ``permit.on_success(duration)``
    or ``permit.on_error(duration, exc)``.
    """

    State = State

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
        if inspect.iscoroutinefunction(function):
            return cast(
                Callable[P, R],
                guard_async(
                    self, function, self.fallback if fallback is None else fallback
                ),
            )
        return self.guarded(function, fallback)

    def call(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`call` calls ``function(*args, **kwargs)`` through the breaker; for
        a coroutine function it returns the awaitable."""
        if inspect.iscoroutinefunction(function):
            return cast(R, guard_async(self, function, self.fallback)(*args, **kwargs))
        return self._guard(function, self.fallback)(*args, **kwargs)

    def guard(self) -> Guard:
        """`guard` is a one-use context manager (sync or async) for a block."""
        return Guard(self)

    def metrics(self, now: int | None = None) -> BreakerMetrics:
        """`metrics` is a snapshot: see :class:`BreakerMetrics`."""
        return breaker_metrics(self, now)

    def force_open(self) -> None:
        """`force_open` rejects every call until a manual transition."""
        self.transition_to(State.FORCED_OPEN)

    def disable(self) -> None:
        """`disable` permits every call and records nothing until a manual
        transition."""
        self.transition_to(State.DISABLED)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} {self.state.name}>"
