"""Every breaker transition, as tables on a fixed time grid (whole seconds).

Each script drives a breaker through the two-step API with a manual clock
and checks the state after every step, for both implementations.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from breaker_support import MS, Boom, ManualClock, S, make_breaker
from ratefuse.breaker import (
    BreakerConfig,
    CircuitBreaker,
    IllegalTransitionError,
    State,
)

CLOSED, OPEN, HALF_OPEN = State.CLOSED, State.OPEN, State.HALF_OPEN
FORCED_OPEN, DISABLED = State.FORCED_OPEN, State.DISABLED

Step = tuple[str, Any, State]


def drive(breaker: CircuitBreaker, clock: ManualClock, script: list[Step]) -> None:
    """`drive` runs ``script``: ("at", t) sets the clock to t seconds;
    ("ok", d) and ("fail", d) make a permitted call of d seconds that
    returns or raises; ("slow_ok", d) is "ok" reported with `on_result`;
    ("reject", None) expects no permit; ("retry", r) expects retry_after r;
    ("probe", None) takes a permit and holds it; ("report", True/False)
    reports the oldest held permit as a success or a failure."""
    held = []
    for index, (action, argument, expected) in enumerate(script):
        where = f"step {index}: {action} {argument}"
        if action == "at":
            clock.now_ns = round(argument * S)
        elif action in ("ok", "fail", "probe"):
            permit = breaker.try_acquire()
            assert permit is not None, where
            if action == "ok":
                permit.on_success(argument)
            elif action == "fail":
                permit.on_error(argument, Boom())
            else:
                held.append(permit)
        elif action == "report":
            permit = held.pop(0)
            if argument:
                permit.on_success(0.0)
            else:
                permit.on_error(0.0, Boom())
        elif action == "reject":
            assert breaker.try_acquire() is None, where
        elif action == "retry":
            assert breaker.retry_after() == argument, where
        else:
            raise AssertionError(f"unknown action {action}")
        assert breaker.state == expected, where


COUNT4 = BreakerConfig(window_size=4, minimum_calls=4, wait_duration=10.0)

TABLE: list[tuple[str, BreakerConfig, list[Step]]] = [
    (
        "failure rate opens once minimum_calls are in the window",
        COUNT4,
        [
            ("fail", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("ok", 0, OPEN),
        ],
    ),
    (
        "a rate below the threshold stays closed",
        COUNT4,
        [
            ("ok", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("ok", 0, CLOSED),
            ("ok", 0, CLOSED),
            ("ok", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, OPEN),
        ],
    ),
    (
        "the count window forgets the oldest call",
        BreakerConfig(window_size=4, minimum_calls=4, failure_rate_threshold=75),
        [
            ("fail", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("ok", 0, CLOSED),
            ("ok", 0, CLOSED),
            ("ok", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, OPEN),
        ],
    ),
    (
        "slow calls open at the slow-call rate; exactly the limit is not slow",
        BreakerConfig(
            window_size=4,
            minimum_calls=4,
            slow_call_duration=1.0,
            slow_call_rate_threshold=50,
        ),
        [
            ("ok", 1.0, CLOSED),
            ("ok", 1.5, CLOSED),
            ("ok", 0.2, CLOSED),
            ("ok", 1.0, CLOSED),
            ("ok", 2.0, OPEN),
        ],
    ),
    (
        "the time window drops a bucket once it is out of the window",
        BreakerConfig(
            window_type="time", window_duration=4.0, window_buckets=4, minimum_calls=2
        ),
        [
            ("at", 0.5, CLOSED),
            ("fail", 0, CLOSED),
            ("at", 4.0, CLOSED),
            ("ok", 0, CLOSED),
            ("at", 4.9, CLOSED),
            ("fail", 0, OPEN),
        ],
    ),
    (
        "the time window keeps buckets still inside it",
        BreakerConfig(
            window_type="time", window_duration=4.0, window_buckets=4, minimum_calls=2
        ),
        [
            ("at", 0.5, CLOSED),
            ("fail", 0, CLOSED),
            ("at", 3.99, CLOSED),
            ("ok", 0, OPEN),
        ],
    ),
    (
        "OPEN rejects for wait_duration, then lets the first probe through",
        BreakerConfig(window_size=2, minimum_calls=1, wait_duration=10.0),
        [
            ("at", 1, CLOSED),
            ("fail", 0, OPEN),
            ("reject", None, OPEN),
            ("retry", 10.0, OPEN),
            ("at", 10.5, OPEN),
            ("retry", 0.5, OPEN),
            ("reject", None, OPEN),
            ("at", 11, OPEN),
            ("retry", 0.0, OPEN),
            ("probe", None, HALF_OPEN),
        ],
    ),
    (
        "HALF_OPEN admits half_open_calls probes; their success closes",
        BreakerConfig(
            window_size=3, minimum_calls=3, wait_duration=1, half_open_calls=3
        ),
        [
            ("fail", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, OPEN),
            ("at", 1, OPEN),
            ("probe", None, HALF_OPEN),
            ("probe", None, HALF_OPEN),
            ("probe", None, HALF_OPEN),
            ("reject", None, HALF_OPEN),
            ("retry", 0.0, HALF_OPEN),
            ("report", True, HALF_OPEN),
            ("report", True, HALF_OPEN),
            ("report", True, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, OPEN),
        ],
    ),
    (
        "a failed probe round re-opens with the wait grown, up to the cap",
        BreakerConfig(
            window_size=2,
            minimum_calls=1,
            wait_duration=2,
            backoff_multiplier=2.5,
            max_wait_duration=8,
            half_open_calls=1,
        ),
        [
            ("fail", 0, OPEN),
            ("at", 2, OPEN),
            ("fail", 0, OPEN),
            ("retry", 5.0, OPEN),
            ("at", 6.99, OPEN),
            ("reject", None, OPEN),
            ("at", 7, OPEN),
            ("fail", 0, OPEN),
            ("retry", 8.0, OPEN),
            ("at", 15, OPEN),
            ("fail", 0, OPEN),
            ("retry", 8.0, OPEN),
            ("at", 23, OPEN),
            ("ok", 0, CLOSED),
            ("fail", 0, OPEN),
            ("retry", 2.0, OPEN),
        ],
    ),
    (
        "a probe round is judged on all of its outcomes",
        BreakerConfig(
            window_size=4, minimum_calls=4, wait_duration=1, half_open_calls=4
        ),
        [
            ("fail", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, OPEN),
            ("at", 1, OPEN),
            ("fail", 0, HALF_OPEN),
            ("ok", 0, HALF_OPEN),
            ("ok", 0, HALF_OPEN),
            ("ok", 0, CLOSED),
        ],
    ),
    (
        "a probe round at the failure threshold re-opens",
        BreakerConfig(
            window_size=4, minimum_calls=4, wait_duration=1, half_open_calls=4
        ),
        [
            ("fail", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, CLOSED),
            ("fail", 0, OPEN),
            ("at", 1, OPEN),
            ("fail", 0, HALF_OPEN),
            ("ok", 0, HALF_OPEN),
            ("fail", 0, HALF_OPEN),
            ("ok", 0, OPEN),
        ],
    ),
    (
        "a stuck probe round fails at the first call after max_half_open_duration",
        BreakerConfig(
            window_size=2,
            minimum_calls=1,
            wait_duration=1,
            half_open_calls=1,
            max_half_open_duration=5,
        ),
        [
            ("fail", 0, OPEN),
            ("at", 1, OPEN),
            ("probe", None, HALF_OPEN),
            ("at", 5.99, HALF_OPEN),
            ("reject", None, HALF_OPEN),
            ("at", 6, HALF_OPEN),
            ("reject", None, OPEN),
            ("retry", 1.0, OPEN),
        ],
    ),
]


@pytest.mark.parametrize(
    ("config", "script"),
    [pytest.param(config, script, id=name) for name, config, script in TABLE],
)
def test_transition_table(impl: Any, config: BreakerConfig, script: list[Step]) -> None:
    clock = ManualClock()
    drive(make_breaker(impl, config, clock=clock), clock, script)


def tripped(impl: Any, **fields: Any) -> tuple[CircuitBreaker, ManualClock]:
    """`tripped` is a breaker (window 2, minimum 1, wait 1 s) just opened."""
    clock = ManualClock()
    config = BreakerConfig(window_size=2, minimum_calls=1, wait_duration=1, **fields)
    breaker = make_breaker(impl, config, clock=clock)
    permit = breaker.try_acquire()
    assert permit is not None
    permit.on_error(0.0, Boom())
    assert breaker.state == OPEN
    return breaker, clock


def test_an_ignored_probe_frees_its_permit(impl: Any) -> None:
    breaker, clock = tripped(impl, half_open_calls=1)
    clock.advance(1)
    permit = breaker.try_acquire()
    assert permit is not None
    assert breaker.try_acquire() is None
    permit.on_error(0.0, KeyboardInterrupt())
    again = breaker.try_acquire()
    assert again is not None
    again.on_success(0.0)
    assert breaker.state == CLOSED


def test_release_frees_a_probe_and_records_nothing(impl: Any) -> None:
    breaker, clock = tripped(impl, half_open_calls=1)
    clock.advance(1)
    permit = breaker.try_acquire()
    assert permit is not None
    permit.release()
    assert breaker.metrics().calls == 0
    assert breaker.try_acquire() is not None


def test_outcomes_from_an_older_generation_are_ignored(impl: Any) -> None:
    clock = ManualClock()
    breaker = make_breaker(
        impl, BreakerConfig(window_size=2, minimum_calls=1), clock=clock
    )
    slow_call = breaker.try_acquire()
    assert slow_call is not None
    breaker.transition_to(FORCED_OPEN)
    breaker.transition_to(CLOSED)
    generation = breaker.generation
    assert generation == slow_call.generation + 2
    slow_call.on_error(0.0, Boom())
    assert breaker.state == CLOSED
    assert breaker.metrics().calls == 0
    assert breaker.generation == generation


def test_forced_open_rejects_for_ever(impl: Any) -> None:
    clock = ManualClock()
    breaker = make_breaker(impl, clock=clock)
    breaker.force_open()
    clock.advance(1e6)
    assert breaker.try_acquire() is None
    assert breaker.retry_after() == math.inf
    assert breaker.state == FORCED_OPEN
    assert breaker.metrics().rejected_calls == 1


def test_disabled_permits_everything_and_records_nothing(impl: Any) -> None:
    breaker = make_breaker(impl, BreakerConfig(window_size=2, minimum_calls=1))
    breaker.disable()
    for _ in range(10):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.on_error(0.0, Boom())
    assert breaker.state == DISABLED
    assert breaker.metrics().calls == 0


def test_reset_forgets_everything(impl: Any) -> None:
    breaker, clock = tripped(impl, backoff_multiplier=3.0, half_open_calls=1)
    clock.advance(1)
    permit = breaker.try_acquire()
    assert permit is not None
    permit.on_error(0.0, Boom())
    assert breaker.retry_after() == 3.0
    assert breaker.try_acquire() is None
    generation = breaker.generation
    breaker.reset()
    metrics = breaker.metrics()
    assert (metrics.state, metrics.calls, metrics.rejected_calls) == (CLOSED, 0, 0)
    assert breaker.generation == generation + 1
    permit = breaker.try_acquire()
    assert permit is not None
    permit.on_error(0.0, Boom())
    assert breaker.retry_after() == 1.0


LEGAL = {
    (source, target)
    for source in State
    for target in State
    if (source, target) != (CLOSED, HALF_OPEN)
}


def into(breaker: CircuitBreaker, state: State) -> None:
    """`into` moves a new breaker into ``state`` by legal transitions."""
    if state == HALF_OPEN:
        breaker.transition_to(OPEN)
    if state != CLOSED:
        breaker.transition_to(state)
    assert breaker.state == state


@pytest.mark.parametrize("source", list(State), ids=lambda state: state.name)
@pytest.mark.parametrize("target", list(State), ids=lambda state: state.name)
def test_manual_transition_table(impl: Any, source: State, target: State) -> None:
    breaker = make_breaker(impl)
    into(breaker, source)
    generation = breaker.generation
    if (source, target) in LEGAL:
        breaker.transition_to(target)
        assert breaker.state == target
        assert breaker.generation == generation + 1
    else:
        with pytest.raises(IllegalTransitionError, match="CLOSED -> HALF_OPEN"):
            breaker.transition_to(target)
        assert breaker.state == source
        assert breaker.generation == generation


def test_transition_to_an_unknown_state_raises(impl: Any) -> None:
    with pytest.raises(ValueError, match="7"):
        make_breaker(impl).transition_to(7)  # type: ignore[arg-type]


def test_manual_open_starts_the_wait_now(impl: Any) -> None:
    clock = ManualClock(5 * S)
    breaker = make_breaker(impl, BreakerConfig(wait_duration=2), clock=clock)
    breaker.transition_to(OPEN)
    assert breaker.retry_after() == 2.0
    clock.advance(2)
    assert breaker.try_acquire() is not None
    assert breaker.state == HALF_OPEN


@pytest.mark.parametrize(
    ("config", "reads_per_call"),
    [
        pytest.param(BreakerConfig(), 0, id="count window, untimed"),
        pytest.param(BreakerConfig(slow_call_duration=1.0), 2, id="timed"),
        pytest.param(BreakerConfig(window_type="time"), 1, id="time window"),
    ],
)
def test_clock_reads_in_closed(
    impl: Any, config: BreakerConfig, reads_per_call: int
) -> None:
    # The clock is read only when a decision needs the time.
    clock = ManualClock()
    breaker = make_breaker(impl, config, clock=clock)
    guarded = breaker(lambda: None)
    for _ in range(10):
        guarded()
    assert clock.reads == 10 * reads_per_call
    assert breaker.state == CLOSED


def test_the_call_that_opens_reads_the_clock_once(impl: Any) -> None:
    clock = ManualClock(7 * MS)
    breaker = make_breaker(
        impl,
        BreakerConfig(window_size=2, minimum_calls=2, wait_duration=1),
        clock=clock,
    )
    for _ in range(2):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.on_error(0.0, Boom())
    assert clock.reads == 1
    assert breaker.state == OPEN
    clock.advance(0.5)
    assert breaker.retry_after() == 0.5
