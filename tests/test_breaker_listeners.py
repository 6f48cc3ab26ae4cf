"""State-change listeners: when they run, what they see, and re-entrancy."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from breaker_support import Boom, ManualClock, make_breaker
from ratefuse.breaker import BreakerConfig, CircuitBreaker, State

CONFIG = BreakerConfig(
    window_size=2, minimum_calls=1, wait_duration=1.0, half_open_calls=1
)


def fail_once(breaker: CircuitBreaker) -> None:
    permit = breaker.try_acquire()
    assert permit is not None
    permit.on_error(0.0, Boom())


def test_listeners_see_every_change_after_it_happened(impl: Any) -> None:
    seen: list[tuple[State, State, State, int]] = []

    def listener(breaker: CircuitBreaker, old: State, new: State) -> None:
        seen.append((old, new, breaker.state, breaker.generation))

    clock = ManualClock()
    breaker = make_breaker(impl, CONFIG, clock=clock, listeners=[listener])
    fail_once(breaker)
    clock.advance(1)
    permit = breaker.try_acquire()
    assert permit is not None
    permit.on_success(0.0)
    breaker.force_open()
    breaker.reset()
    closed, opened, half = State.CLOSED, State.OPEN, State.HALF_OPEN
    assert seen == [
        (closed, opened, opened, 2),
        (opened, half, half, 3),
        (half, closed, closed, 4),
        (closed, State.FORCED_OPEN, State.FORCED_OPEN, 5),
        (State.FORCED_OPEN, closed, closed, 6),
    ]


def test_a_listener_may_call_the_breaker(impl: Any) -> None:
    # A listener that reads, asks for permits and changes the state: no
    # deadlock, and its own change is delivered after the current one.
    seen: list[tuple[State, State]] = []
    clock = ManualClock()

    def listener(breaker: CircuitBreaker, old: State, new: State) -> None:
        seen.append((old, new))
        breaker.metrics()
        assert breaker.try_acquire() is None or new != State.OPEN
        if new == State.OPEN:
            breaker.transition_to(State.FORCED_OPEN)
            assert breaker.state == State.FORCED_OPEN
            assert seen[-1] == (old, new)

    breaker = make_breaker(impl, CONFIG, clock=clock, listeners=[listener])
    fail_once(breaker)
    assert breaker.state == State.FORCED_OPEN
    assert seen == [
        (State.CLOSED, State.OPEN),
        (State.OPEN, State.FORCED_OPEN),
    ]


def test_a_failing_listener_is_logged_and_the_others_still_run(
    impl: Any, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[State] = []

    def broken(breaker: CircuitBreaker, old: State, new: State) -> None:
        raise RuntimeError("listener bug")

    breaker = make_breaker(impl, CONFIG)
    breaker.add_listener(broken)
    breaker.add_listener(lambda breaker, old, new: seen.append(new))
    with caplog.at_level(logging.ERROR, logger="ratefuse.breaker"):
        fail_once(breaker)
    assert seen == [State.OPEN]
    assert breaker.state == State.OPEN
    assert "listener" in caplog.text
    assert "listener bug" in caplog.text


def test_a_removed_listener_is_not_called(impl: Any) -> None:
    seen: list[State] = []

    def listener(breaker: CircuitBreaker, old: State, new: State) -> None:
        seen.append(new)

    breaker = make_breaker(impl, CONFIG)
    breaker.add_listener(listener)
    breaker.force_open()
    breaker.remove_listener(listener)
    breaker.reset()
    assert seen == [State.FORCED_OPEN]
    with pytest.raises(ValueError, match="not in list"):
        breaker.remove_listener(listener)


def test_a_base_exception_from_a_listener_propagates_and_delivery_resumes(
    impl: Any,
) -> None:
    seen: list[State] = []

    def listener(breaker: CircuitBreaker, old: State, new: State) -> None:
        seen.append(new)
        if new == State.FORCED_OPEN:
            raise KeyboardInterrupt

    breaker = make_breaker(impl, CONFIG, listeners=[listener])
    with pytest.raises(KeyboardInterrupt):
        breaker.force_open()
    breaker.disable()
    assert seen == [State.FORCED_OPEN, State.DISABLED]
