"""A permit is returned on every exit path (issue 21, item 3).

A listener that raises a BaseException on OPEN -> HALF_OPEN, or a clock
that raises when a probe's start or end time is read, must not leave the
probe's permit taken: HALF_OPEN would then reject every call for ever.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from breaker_support import ManualClock, make_breaker
from ratefuse.breaker import BreakerConfig, CircuitBreaker, State


class Interrupt(BaseException):
    """`Interrupt` stands for KeyboardInterrupt raised in a callback."""


class FailingClock(ManualClock):
    """`FailingClock` raises Interrupt on its reads numbered in ``failing``."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[int] = set()

    def __call__(self) -> int:
        now = super().__call__()
        if self.reads in self.failing:
            raise Interrupt
        return now


def tripped(impl: Any, **fields: Any) -> tuple[CircuitBreaker, FailingClock]:
    """`tripped` is an OPEN breaker with one half-open probe, wait 1 s."""
    clock = FailingClock()
    config = BreakerConfig(
        window_size=2, minimum_calls=1, wait_duration=1, half_open_calls=1, **fields
    )
    breaker = make_breaker(impl, config, clock=clock)
    breaker.transition_to(State.OPEN)
    clock.advance(1)
    return breaker, clock


def assert_probe_free(breaker: CircuitBreaker) -> None:
    permit = breaker.try_acquire()
    assert permit is not None, "the probe permit leaked"
    permit.on_success(0.0)
    assert breaker.state == State.CLOSED


def test_a_listener_interrupting_half_open_entry_frees_the_probe(impl: Any) -> None:
    breaker, _ = tripped(impl)

    def listener(_: object, old: State, new: State) -> None:
        if new == State.HALF_OPEN:
            raise Interrupt

    breaker.add_listener(listener)
    with pytest.raises(Interrupt):
        breaker.try_acquire()
    assert breaker.state == State.HALF_OPEN
    breaker.remove_listener(listener)
    assert_probe_free(breaker)


def test_a_listener_interrupting_the_decorator_frees_the_probe(impl: Any) -> None:
    breaker, _ = tripped(impl)

    def listener(_: object, old: State, new: State) -> None:
        raise Interrupt

    breaker.add_listener(listener)
    calls: list[int] = []
    with pytest.raises(Interrupt):
        breaker(calls.append)(1)
    assert calls == []
    breaker.remove_listener(listener)
    assert_probe_free(breaker)


def run_form(breaker: CircuitBreaker, form: str) -> None:
    """`run_form` makes one call through ``breaker`` in ``form``."""
    if form == "decorator":
        breaker(lambda: None)()
    elif form == "block":
        with breaker.guard():
            pass
    else:

        async def work() -> None:
            return None

        asyncio.run(breaker(work)())


@pytest.mark.parametrize("form", ["decorator", "block", "async"])
@pytest.mark.parametrize("read", ["start", "end"])
def test_a_clock_raising_around_a_probe_frees_it(
    impl: Any, form: str, read: str
) -> None:
    breaker, clock = tripped(impl, slow_call_duration=5.0)
    # Read 1 opened the wait; the acquire reads once, then start, then end.
    clock.failing = {clock.reads + (2 if read == "start" else 3)}
    with pytest.raises(Interrupt):
        run_form(breaker, form)
    assert breaker.state == State.HALF_OPEN
    assert_probe_free(breaker)


def test_a_clock_raising_when_a_probe_reports_frees_it(impl: Any) -> None:
    breaker, clock = tripped(impl)
    permit = breaker.try_acquire()
    assert permit is not None
    clock.failing = {clock.reads + 1}
    with pytest.raises(Interrupt):
        permit.on_error(0.0, ValueError())
    assert_probe_free(breaker)
