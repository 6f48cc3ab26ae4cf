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

The decision steps are compiled (``ratefuse.engine._breaker_c``) with a
pure-Python twin as the reference (``ratefuse.engine._breaker_py``); the
forms (async decorator, context manager, ``call``) are the shared ones of
:mod:`ratefuse.engine.breaker_forms`, which the fleet breakers use too, over
the public steps (``permit_or_error``, the permit's ``on_success`` ...).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

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
from ratefuse.core.breaker.spec import IllegalTransitionError, State
from ratefuse.engine.breaker import BreakerCore, GuardedFunction, Permit
from ratefuse.engine.breaker_forms import (
    Breaker,
    BreakerForms,
    BreakerPermit,
    GuardedBlock,
    guard_async,
)

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
    "Breaker",
    "BreakerConfig",
    "BreakerMetrics",
    "BreakerPermit",
    "CircuitBreaker",
    "GuardedBlock",
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

    Each state shows its own tally, as in Resilience4j: ``calls``,
    ``failed_calls`` and ``slow_calls`` are the sliding window in CLOSED,
    the probe round in HALF_OPEN, nothing in FORCED_OPEN and DISABLED; OPEN
    shows what opened it (the window, the failed or expired probe round, or
    nothing after FORCED_OPEN or DISABLED). ``failure_rate`` and
    ``slow_call_rate`` are percentages of ``calls``, 0.0 when there are
    none (Resilience4j reports -1 below ``minimum_calls``: compare ``calls``
    with it). ``rejected_calls`` counts the rejections since the state
    began (OPEN continues its predecessor's count; `counters()` keeps the
    total). ``probes_issued`` counts the permits of the current probe round
    (0 outside HALF_OPEN). ``generation`` counts state changes.
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


class CircuitBreaker(BreakerCore, BreakerForms):
    """`CircuitBreaker` guards calls to one dependency.

    ``CircuitBreaker(name="breaker", config=None, *, clock=None,
    fallback=None, listeners=())``: ``config`` (None: the defaults) holds
    the rules, ``clock`` returns integer ns (None: the monotonic clock, read
    in C by the compiled core, and only when a decision needs the time),
    ``fallback`` answers rejected calls instead of CircuitOpenError, and
    ``listeners`` are called as ``listener(breaker, old, new)`` after each
    state change. Thread-safe and asyncio-safe: decisions are atomic and
    listeners run outside them.

    Forms (from :class:`ratefuse.engine.breaker_forms.BreakerForms`):
    ``@breaker`` on sync and async functions, ``with breaker.guard()`` and
    ``async with breaker.guard()``, ``breaker.call(fn, *args)``, and
    ``permit = breaker.try_acquire()`` then ``permit.on_success(duration)``
    or ``permit.on_error(duration, exc)``. It meets the
    :class:`ratefuse.engine.breaker_forms.Breaker` protocol, as the fleet
    breakers do.
    """

    State = State

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


def __getattr__(name: str) -> Any:
    # Guard was renamed GuardedBlock (three types were called Guard).
    if name == "Guard":
        warnings.warn(
            "ratefuse.breaker.Guard is deprecated; use GuardedBlock",
            DeprecationWarning,
            stacklevel=2,
        )
        return GuardedBlock
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
