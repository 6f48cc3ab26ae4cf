"""The breaker against Resilience4j's own state-machine tests (issue 21, item 20).

Each row is a scenario of Resilience4j's CircuitBreakerStateMachineTest,
CircuitBreakerConfigTest, CircuitBreakerMetricsTest and the sliding-window
metrics tests, written in ratefuse terms (see the notation below) and run on
both cores with a manual clock. Rows 27 and 29 pin deliberate differences
(outcomes of an older state are ignored; the OPEN wait ends at ``>=``).

Steps: ("t", s) sets the clock to s seconds; ("ok", d) / ("fail", d) make a
permitted call of d seconds (default 0) that succeeds / raises; ("ign",) a
call that raises an ignored exception; ("hold",) takes a permit and keeps it;
("rok",) / ("rfail",) / ("rel",) report the oldest held permit as a success /
a failure / release it; ("rej",) expects no permit; ("to", S) transitions by
hand (an illegal one is ignored: row 25 checks that nothing happened);
("reset",). A `check` compares metrics() fields, retry_after() ("retry") and
the listener's (old, new) pairs so far ("ev").
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, NamedTuple

import pytest

from breaker_support import Boom, ManualClock, S, make_breaker
from ratefuse.breaker import (
    BreakerConfig,
    CircuitBreaker,
    IllegalTransitionError,
    State,
)

# One letter each, as in the notation of the scenario tables.
C, O, H = State.CLOSED, State.OPEN, State.HALF_OPEN  # noqa: E741
F, D = State.FORCED_OPEN, State.DISABLED


class Ignored(Exception):
    """`Ignored` is the R4J config's ignored exception."""


# The setUp of CircuitBreakerStateMachineTest.
R4J = BreakerConfig(
    failure_rate_threshold=50,
    slow_call_duration=4.0,
    slow_call_rate_threshold=50,
    window_type="time",
    window_duration=20.0,
    window_buckets=20,
    minimum_calls=5,
    wait_duration=5.0,
    half_open_calls=4,
    max_half_open_duration=1.0,
    ignore_exceptions=(Ignored,),
)

Step = tuple[Any, ...]


class Row(NamedTuple):
    """`Row` is one scenario: its name, the Resilience4j test it comes
    from, the config and the steps."""

    name: str
    origin: str
    config: BreakerConfig
    steps: list[Step]


def check(**expected: Any) -> Step:
    """`check` is a step comparing the named fields with ``expected``."""
    return ("check", expected)


def observed(breaker: CircuitBreaker, events: list[tuple[str, str]]) -> dict[str, Any]:
    """`observed` is every field a `check` may name."""
    metrics = breaker.metrics()
    return {
        "state": metrics.state,
        "calls": metrics.calls,
        "failed": metrics.failed_calls,
        "slow": metrics.slow_calls,
        "rejected": metrics.rejected_calls,
        "fr": round(metrics.failure_rate, 2),
        "sr": round(metrics.slow_call_rate, 2),
        "probes": metrics.probes_issued,
        "retry": breaker.retry_after(),
        "ev": list(events),
    }


def run(breaker: CircuitBreaker, clock: ManualClock, steps: list[Step]) -> None:
    """`run` drives ``breaker`` through ``steps``, asserting every check."""
    events: list[tuple[str, str]] = []
    breaker.add_listener(
        lambda _, old, new: events.append((old.name[:2], new.name[:2]))
    )
    held: list[Any] = []
    for index, (action, *arguments) in enumerate(steps):
        where = f"step {index}: {action} {arguments}"
        argument = arguments[0] if arguments else None
        if action == "t":
            clock.now_ns = round(argument * S)
        elif action in ("ok", "fail", "ign", "hold"):
            permit = breaker.try_acquire()
            assert permit is not None, where
            if action == "ok":
                permit.on_success(argument or 0.0)
            elif action == "fail":
                permit.on_error(argument or 0.0, Boom())
            elif action == "ign":
                permit.on_error(0.0, Ignored())
            else:
                held.append(permit)
        elif action == "rok":
            held.pop(0).on_success(0.0)
        elif action == "rfail":
            held.pop(0).on_error(0.0, Boom())
        elif action == "rel":
            held.pop(0).release()
        elif action == "rej":
            assert breaker.try_acquire() is None, where
        elif action == "to":
            with contextlib.suppress(IllegalTransitionError):
                breaker.transition_to(argument)
        elif action == "reset":
            breaker.reset()
        else:
            assert action == "check", where
            got = observed(breaker, events)
            for field, value in argument.items():
                assert got[field] == value, f"{where}: {field}"


ROWS = [
    Row(
        "01 failure rate at minimum_calls (time window)",
        "SMTest.shouldOpenAfterFailureRateThresholdExceeded",
        R4J,
        [
            ("fail",),
            check(state=C, calls=1, failed=1),
            ("fail",),
            ("fail",),
            check(state=C, calls=3, failed=3),
            ("ok",),
            check(state=C, calls=4, failed=3),
            ("ok",),
            check(state=O, calls=5, failed=3, fr=60.0, rejected=0, ev=[("CL", "OP")]),
            ("rej",),
            check(state=O, calls=5, failed=3, rejected=1),
        ],
    ),
    Row(
        "02 time window, one call per second",
        "SMTest.shouldOpenAfterFailureRateThresholdExceeded2",
        R4J,
        [
            ("t", 0),
            ("ok",),
            ("t", 1),
            ("ok",),
            ("t", 2),
            ("ok",),
            ("t", 3),
            ("fail",),
            ("t", 4),
            ("fail",),
            check(state=C, calls=5, failed=2),
            ("t", 5),
            check(state=C),
            ("fail",),
            check(state=O, calls=6, failed=3, fr=50.0),
        ],
    ),
    Row(
        "03 slow-call rate opens",
        "SMTest.shouldOpenAfterSlowCallRateThresholdExceeded",
        R4J,
        [
            ("fail", 5.0),
            ("ok", 5.0),
            ("fail", 0.1),
            ("ok", 0.1),
            check(state=C, calls=4, slow=2),
            ("ok", 5.0),
            check(state=O, calls=5, slow=3, sr=60.0, failed=2, fr=40.0),
        ],
    ),
    Row(
        "04 slow threshold is strict",
        "CircuitBreakerMetrics.onSuccess (slower than the threshold)",
        BreakerConfig(
            window_size=2,
            minimum_calls=2,
            slow_call_duration=1.0,
            slow_call_rate_threshold=100,
        ),
        [
            ("ok", 1.0),
            ("ok", 1.0),
            check(state=C, slow=0),
            ("ok", 1.5),
            check(state=C, slow=1),
            ("ok", 1.5),
            check(state=O, slow=2),
        ],
    ),
    Row(
        "05 count window evicts oldest",
        "FixedSizeSlidingWindowMetricsTest.testSlidingWindowMetrics",
        BreakerConfig(window_size=4, minimum_calls=4, failure_rate_threshold=100),
        [
            ("fail",),
            check(calls=1, failed=1, fr=100.0, state=C),
            ("ok",),
            check(calls=2, fr=50.0),
            ("ok",),
            check(calls=3, fr=33.33),
            ("ok",),
            check(calls=4, fr=25.0, state=C),
            ("ok",),
            check(calls=4, failed=0, fr=0.0),
        ],
    ),
    Row(
        "06 count window of 10",
        "CircuitBreakerMetricsTest.testCircuitBreakerMetrics",
        BreakerConfig(window_size=10, minimum_calls=10, failure_rate_threshold=70),
        [
            ("ok",),
            ("ok",),
            ("fail",),
            ("fail",),
            check(calls=4, failed=2),
            ("fail",),
            ("fail",),
            ("fail",),
            ("fail",),
            ("ok",),
            ("ok",),
            ("ok",),
            ("ok",),
            check(state=C, calls=10, failed=6, fr=60.0),
            ("ok",),
            ("ok",),
            ("ok",),
            check(state=C, calls=10, failed=3, fr=30.0),
        ],
    ),
    Row(
        "07 time window drops whole seconds",
        "SlidingTimeWindowMetricsTest.shouldClearSlidingTimeWindowMetrics",
        BreakerConfig(
            window_type="time", window_duration=5, window_buckets=5, minimum_calls=100
        ),
        [
            ("fail",),
            ("t", 0.1),
            ("ok",),
            ("t", 0.8),
            ("fail",),
            check(calls=3, failed=2),
            ("t", 4.8),
            check(calls=3),
            ("t", 5.8),
            check(calls=0),
            ("t", 5.9),
            ("ok",),
            check(calls=1),
            ("t", 10.9),
            ("ok",),
            check(calls=1, failed=0),
        ],
    ),
    Row(
        "08 minimum capped by count window",
        "ConfigTest.shouldReduceMinimumNumberOfCallsToSlidingWindowSize",
        BreakerConfig(window_size=5, minimum_calls=6),
        [
            ("fail",),
            ("fail",),
            ("fail",),
            ("fail",),
            check(state=C),
            ("fail",),
            check(state=O, calls=5),
        ],
    ),
    Row(
        "09 time window keeps a high minimum",
        "ConfigTest.shouldAllowHighMinimumNumberOfCallsWhenSlidingWindowIsTimeBased",
        BreakerConfig(
            window_type="time", window_duration=10, window_buckets=10, minimum_calls=100
        ),
        [("fail",)] * 99
        + [check(state=C, calls=99), ("fail",), check(state=O, calls=100)],
    ),
    Row(
        "10 HALF_OPEN permits exactly half_open_calls, per round",
        "SMTest.shouldOnlyPermitFourCallsInHalfOpenState",
        R4J,
        [
            ("to", O),
            ("to", H),
            ("hold",),
            ("hold",),
            ("hold",),
            ("hold",),
            check(state=H, probes=4),
            ("rej",),
            ("rej",),
            check(rejected=2),
            ("to", O),
            ("to", H),
            check(state=H, probes=0, rejected=0),
            ("hold",),
            ("hold",),
            ("hold",),
            ("hold",),
            ("rej",),
            check(
                rejected=1, ev=[("CL", "OP"), ("OP", "HA"), ("HA", "OP"), ("OP", "HA")]
            ),
        ],
    ),
    Row(
        "11 release gives a probe back",
        "SMTest.shouldIncreaseCounterOnReleasePermission",
        R4J,
        [
            ("to", O),
            ("to", H),
            ("hold",),
            ("hold",),
            ("hold",),
            ("hold",),
            ("rej",),
            ("rej",),
            ("rel",),
            ("hold",),
            check(state=H, probes=4),
        ],
    ),
    Row(
        "12 failed round re-opens; OPEN shows the round",
        "SMTest.shouldTransitionBackToOpenStateWhenFailureRateIsAboveThreshold",
        R4J,
        [
            ("to", O),
            ("to", H),
            check(calls=0, rejected=0),
            ("fail",),
            ("fail",),
            ("ok",),
            ("fail",),
            check(state=O, calls=4, failed=3, fr=75.0, rejected=0),
        ],
    ),
    Row(
        "13 slow round re-opens",
        "SMTest.shouldTransitionBackToOpenStateWhenSlowCallRateIsAboveThreshold",
        R4J,
        [
            ("to", O),
            ("to", H),
            ("ok", 5.0),
            ("ok", 5.0),
            ("ok", 5.0),
            ("ok", 1.0),
            check(state=O, calls=4, slow=3, sr=75.0, fr=0.0),
        ],
    ),
    Row(
        "14 good round closes with an empty window",
        "SMTest.shouldTransitionBackToClosedStateWhenFailureIsBelowThreshold",
        R4J,
        [
            ("to", O),
            ("to", H),
            ("fail",),
            ("ok",),
            ("ok",),
            ("ok",),
            check(state=C, calls=0),
            ("ok",),
            check(calls=1, failed=0),
        ],
    ),
    Row(
        "15 ignored error frees the probe",
        "SMTest.shouldReleasePermissionWhenExceptionIgnored",
        R4J,
        [
            ("to", O),
            ("to", H),
            ("ok",),
            ("ok",),
            ("ok",),
            check(state=H, calls=3),
            ("ign",),
            check(state=H, calls=3, probes=3),
            ("fail",),
            check(state=C, calls=0),
        ],
    ),
    Row(
        "16 only ignored errors, then close",
        "SMTest.shouldIgnoreExceptionsAndThenTransitionToClosed",
        R4J,
        [
            ("to", O),
            ("to", H),
            ("ign",),
            ("ign",),
            ("ign",),
            ("ign",),
            check(state=H, calls=0),
            ("ok",),
            ("ok",),
            ("ok",),
            check(state=H, calls=3),
            ("ok",),
            check(state=C, calls=0),
        ],
    ),
    Row(
        "17 OPEN waits, rejections counted per state",
        "SMTest.shouldTransitionToHalfOpenAfterWaitDuration",
        R4J,
        [
            ("to", O),
            check(retry=5.0),
            ("rej",),
            ("t", 3),
            ("rej",),
            check(state=O, calls=0, rejected=2),
            ("t", 6),
            ("hold",),
            check(state=H, calls=0, rejected=0),
        ],
    ),
    Row(
        "18 manual re-open grows the wait (backoff)",
        "SMTest.shouldTransitionToHalfOpenAfterWaitInterval",
        BreakerConfig(
            window_size=5, half_open_calls=4, wait_duration=5, backoff_multiplier=1.5
        ),
        [
            ("to", O),
            check(retry=5.0),
            ("t", 3),
            ("rej",),
            ("t", 6),
            ("hold",),
            check(state=H),
            ("to", O),
            check(state=O, retry=7.5),
            ("t", 12),
            ("rej",),
            ("t", 14),
            ("hold",),
            check(state=H),
        ],
    ),
    Row(
        "19 max_half_open_duration re-opens at the deadline (no probe out)",
        "SMTest.circuitBreakerTransitionsToOpenAfterWaitDurationInHalfOpenState",
        R4J,
        [
            ("to", O),
            ("to", H),
            ("t", 2),
            ("rej",),
            check(state=O, retry=4.0, ev=[("CL", "OP"), ("OP", "HA"), ("HA", "OP")]),
        ],
    ),
    Row(
        "20 max_half_open_duration with all probes out; late reports ignored",
        "the same, every probe out, late reports",
        R4J,
        [
            ("to", O),
            ("to", H),
            ("hold",),
            ("hold",),
            ("hold",),
            ("hold",),
            ("t", 1.5),
            ("rok",),
            ("rok",),
            ("rok",),
            ("rok",),
            check(state=O, retry=4.5),
        ],
    ),
    Row(
        "21 no listener call for re-entries",
        "SMTest.circuitBreakerDoesNotPublishStateTransitionEventsForInternalTransitions",
        R4J,
        [
            ("to", O),
            ("to", O),
            ("to", H),
            ("to", H),
            ("to", D),
            ("to", D),
            ("to", C),
            ("to", C),
            check(state=C, ev=[("CL", "OP"), ("OP", "HA"), ("HA", "DI"), ("DI", "CL")]),
        ],
    ),
    Row(
        "22 reset",
        "SMTest.shouldResetMetrics; EventPublisherTest.shouldConsumeOnResetEvent",
        R4J,
        [
            ("ok",),
            ("fail",),
            check(calls=2, failed=1),
            ("reset",),
            check(state=C, calls=0, ev=[]),
            ("to", O),
            ("reset",),
            check(state=C, ev=[("CL", "OP"), ("OP", "CL")]),
        ],
    ),
    Row(
        "23 disabled: fresh, empty, permits all",
        "SMTest.shouldDisableCircuitBreaker",
        R4J,
        [
            ("ok",),
            ("fail",),
            ("to", D),
            check(state=D, calls=0, failed=0, rejected=0),
            ("ok",),
            ("fail",),
            ("fail",),
            ("fail",),
            ("fail",),
            check(state=D, calls=0, ev=[("CL", "DI")]),
        ],
    ),
    Row(
        "24 forced open: fresh, never half-opens",
        "SMTest.shouldForceOpenCircuitBreaker",
        R4J,
        [
            ("ok",),
            ("fail",),
            ("to", F),
            ("rej",),
            ("t", 6),
            ("rej",),
            check(state=F, calls=0, rejected=2, retry=math.inf),
        ],
    ),
    Row(
        "25 CLOSED->HALF_OPEN illegal",
        "SMTest.shouldNotAllowTransitionFromClosedToHalfOpen",
        R4J,
        [("to", H), check(state=C, ev=[])],
    ),
    Row(
        "26 verdict at min(minimum_calls, half_open_calls)",
        "CircuitBreakerMetrics.forHalfOpen (minimum = min(minimum, permitted))",
        BreakerConfig(
            window_size=10, minimum_calls=2, half_open_calls=4, wait_duration=1
        ),
        [
            ("fail",),
            ("fail",),
            check(state=O),
            ("t", 1),
            ("hold",),
            ("hold",),
            ("hold",),
            ("hold",),
            ("rok",),
            ("rok",),
            check(state=C, calls=0),
            ("rfail",),
            ("rfail",),
            check(state=C, calls=0),
        ],
    ),
    Row(
        "27 late outcome of an older state ignored",
        "SM.OpenState.onError (late outcome; deliberate difference D8)",
        BreakerConfig(window_size=2, minimum_calls=1),
        [
            ("hold",),
            ("fail",),
            check(state=O, calls=1),
            ("rfail",),
            check(state=O, calls=1, failed=1),
        ],
    ),
    Row(
        "28 wait after DISABLED and FORCED_OPEN",
        "SM attempts(): DisabledState 0, ForcedOpenState +1",
        BreakerConfig(
            window_size=2,
            minimum_calls=1,
            wait_duration=2,
            backoff_multiplier=2,
            max_wait_duration=100,
            half_open_calls=1,
        ),
        [
            ("fail",),
            check(retry=2.0),
            ("t", 2),
            ("fail",),
            check(state=O, retry=4.0),
            ("to", D),
            ("to", O),
            check(retry=2.0),
            ("reset",),
            ("to", F),
            ("to", O),
            check(retry=4.0),
        ],
    ),
    Row(
        "29 OPEN boundary (deliberate >=)",
        "SM.OpenState.tryAcquirePermission isAfter (deliberate difference D9)",
        BreakerConfig(window_size=2, minimum_calls=1, wait_duration=5),
        [("fail",), ("t", 4.999), ("rej",), ("t", 5), ("hold",), check(state=H)],
    ),
    Row(
        "30 manual OPEN->OPEN restarts and grows the wait, no event",
        "SM.transitionToOpenState attempts+1 on an internal transition",
        BreakerConfig(
            window_size=2, minimum_calls=1, wait_duration=2, backoff_multiplier=2
        ),
        [
            ("fail",),
            check(retry=2.0),
            ("t", 1),
            ("to", O),
            check(state=O, retry=4.0, ev=[("CL", "OP")]),
            ("t", 4.9),
            ("rej",),
            ("t", 5),
            ("hold",),
            check(state=H),
        ],
    ),
]


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name) for row in ROWS])
def test_resilience4j_scenario(impl: Any, row: Row) -> None:
    clock = ManualClock()
    run(make_breaker(impl, row.config, clock=clock), clock, row.steps)
