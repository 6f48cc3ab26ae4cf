"""Breaker benchmark scenarios, shared by ``benchmarks/test_bench_breaker.py``
and (through :func:`breaker_scenarios`) the ``ratefuse`` command line.

Every loop performs its operation ``n`` times over ``itertools.repeat``, the
cheapest Python loop; the floors (an empty loop, a bare call of the no-op,
raising and catching an exception, reading the monotonic clock) are in the
same groups, so an overhead is a difference within a group.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from itertools import repeat
from typing import Any

from ratefuse.bench.scenarios import (
    Loop,
    Scenario,
    available_implementations,
    calls,
    empty_loop,
    noop,
    rejections,
)
from ratefuse.core import implementation as _impl
from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.core.breaker.spec import State
from ratefuse.core.errors import CircuitOpenError

# An OPEN breaker stays open for the whole run.
_OPEN_FOR = BreakerConfig(wait_duration=3600.0)


def _raise_and_catch(n: int) -> None:
    for _ in repeat(None, n):
        try:
            raise ValueError
        except ValueError:
            pass


def _two_step(try_acquire: Callable[[], Any], n: int) -> None:
    for _ in repeat(None, n):
        try_acquire().on_success(0.0)


def _breaker(
    implementation: _impl.Implementation,
    config: BreakerConfig | None = None,
    state: State = State.CLOSED,
    **options: Any,
) -> Any:
    core_class = _impl.load("engine._breaker", implementation).BreakerCore
    # The public CircuitBreaker is a thin Python subclass of the core; build
    # the same shape for either implementation.
    breaker = type("CircuitBreaker", (core_class,), {})("bench", config, **options)
    if state != State.CLOSED:
        breaker.transition_to(state)
    return breaker


def _closed_decorator(
    implementation: _impl.Implementation, config: BreakerConfig
) -> Loop:
    return partial(calls, _breaker(implementation, config).guarded(noop))


def _closed_two_step(implementation: _impl.Implementation) -> Loop:
    return partial(_two_step, _breaker(implementation).try_acquire)


def _open_two_step(implementation: _impl.Implementation) -> Loop:
    return partial(calls, _breaker(implementation, _OPEN_FOR, State.OPEN).try_acquire)


def _open_decorator(implementation: _impl.Implementation) -> Loop:
    breaker = _breaker(implementation, _OPEN_FOR, State.OPEN)
    return partial(rejections, breaker.guarded(noop), CircuitOpenError)


def _open_fallback(implementation: _impl.Implementation) -> Loop:
    breaker = _breaker(implementation, _OPEN_FOR, State.OPEN, fallback=noop)
    return partial(calls, breaker.guarded(noop))


def breaker_scenarios(
    implementations: Iterable[_impl.Implementation] | None = None,
) -> list[Scenario]:
    """`breaker_scenarios` is a no-op guarded by a CLOSED breaker (decorator,
    timed decorator, time-window decorator, two-step) and calls rejected by
    an OPEN one (two-step, decorator raising, decorator with a fallback),
    per implementation, with the floors they are compared with."""
    chosen = list(implementations or available_implementations())
    closed, timed, opened = (
        "breaker closed",
        "breaker closed, clock read",
        "breaker open",
    )
    scenarios = [
        Scenario(closed, "empty loop", "-", lambda: empty_loop),
        Scenario(closed, "bare call", "-", lambda: partial(calls, noop)),
        Scenario(
            timed,
            "time.monotonic_ns()",
            "-",
            lambda: partial(calls, time.monotonic_ns),
        ),
        Scenario(opened, "raise and catch", "-", lambda: _raise_and_catch),
    ]
    for implementation in chosen:
        scenarios += [
            Scenario(
                closed,
                "decorator",
                implementation,
                partial(_closed_decorator, implementation, BreakerConfig()),
            ),
            Scenario(
                closed,
                "two-step",
                implementation,
                partial(_closed_two_step, implementation),
            ),
            Scenario(
                timed,
                "decorator, slow-call tracking",
                implementation,
                partial(
                    _closed_decorator,
                    implementation,
                    BreakerConfig(slow_call_duration=1.0),
                ),
            ),
            Scenario(
                timed,
                "decorator, time window",
                implementation,
                partial(
                    _closed_decorator, implementation, BreakerConfig(window_type="time")
                ),
            ),
            Scenario(
                opened,
                "two-step",
                implementation,
                partial(_open_two_step, implementation),
            ),
            Scenario(
                opened,
                "decorator",
                implementation,
                partial(_open_decorator, implementation),
            ),
            Scenario(
                opened,
                "decorator, fallback",
                implementation,
                partial(_open_fallback, implementation),
            ),
        ]
    return scenarios
