"""Compiled and reference breakers make identical decisions.

A Hypothesis RuleBasedStateMachine drives one breaker on each core with the
same random configs, calls, outcomes, durations, manual transitions and clock
steps, and requires the same states, permits, rejections, errors, metrics
and even the same number of clock reads after every step.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from breaker_support import MS, Boom, ManualClock, S, make_breaker
from ratefuse.breaker import (
    BreakerConfig,
    CircuitBreaker,
    IllegalTransitionError,
    Permit,
    State,
)
from ratefuse.core.errors import CircuitOpenError


class Ignored(Exception):
    """`Ignored` is listed in ignore_exceptions."""


class Answered(Exception):
    """`Answered` is an exception that is not recorded (counts as success)."""


DURATIONS = st.sampled_from([0.0, 0.001, 0.25, 0.5, 0.5000001, 1.0, 2.5])
STEPS_NS = st.one_of(
    st.sampled_from([0, 1, MS, 250 * MS, S - 1, S, 2 * S, 5 * S]),
    st.integers(0, 12 * S),
)
OUTCOMES = st.sampled_from(
    ["ok", "bad_result", "fail", "ignored", "answered", "release"]
)


@st.composite
def configs(draw: st.DrawFn) -> BreakerConfig:
    window_type = draw(st.sampled_from(["count", "time"]))
    window_size = draw(st.integers(1, 6))
    wait = draw(st.sampled_from([0.5, 1.0, 2.0]))
    max_wait = draw(st.sampled_from([None, wait, wait * 3]))
    return BreakerConfig(
        failure_rate_threshold=draw(st.sampled_from([1.0, 33.3, 50.0, 100.0])),
        slow_call_rate_threshold=draw(st.sampled_from([25.0, 50.0, 100.0])),
        slow_call_duration=draw(st.sampled_from([None, 0.5])),
        window_type=window_type,
        window_size=window_size,
        window_duration=draw(st.sampled_from([1.0, 3.0])),
        window_buckets=draw(st.integers(1, 4)),
        minimum_calls=draw(
            st.integers(1, window_size if window_type == "count" else 6)
        ),
        wait_duration=wait,
        backoff_multiplier=draw(st.sampled_from([1.0, 1.5, 2.0])),
        max_wait_duration=max_wait,
        half_open_calls=draw(st.integers(1, 3)),
        max_half_open_duration=draw(st.sampled_from([None, 1.0])),
        ignore_exceptions=(Ignored,),
        result_predicate=lambda result: result == "bad",
    )


class Side:
    """`Side` is one implementation's breaker, clock and guarded function."""

    def __init__(self, impl: Any, config: BreakerConfig, start_ns: int) -> None:
        self.clock = ManualClock(start_ns)
        self.breaker: CircuitBreaker = make_breaker(impl, config, clock=self.clock)
        self.guarded = self.breaker(self.body)

    def body(self, duration_ns: int, outcome: str) -> str:
        self.clock.now_ns += duration_ns
        if outcome == "fail":
            raise Boom()
        if outcome == "ignored":
            raise Ignored()
        if outcome == "answered":
            raise Answered()
        return "bad" if outcome == "bad_result" else "good"

    def call(self, duration_ns: int, outcome: str) -> tuple[str, object]:
        try:
            return "returned", self.guarded(duration_ns, outcome)
        except CircuitOpenError as exc:
            return "rejected", exc.retry_after
        except Exception as exc:
            return "raised", type(exc)

    def observe(self) -> tuple[object, ...]:
        return (
            self.breaker.state,
            self.breaker.generation,
            self.breaker.retry_after(),
            self.breaker.metrics(),
            self.clock.reads,
            self.clock.now_ns,
        )


class SameDecisions(RuleBasedStateMachine):
    """Runs the same random trace through both implementations."""

    implementations: tuple[Any, Any]

    def __init__(self) -> None:
        super().__init__()
        self.sides: tuple[Side, Side] | None = None
        self.held: list[tuple[Permit, Permit]] = []

    @initialize(config=configs(), start_ns=st.integers(0, 10 * S))
    def build(self, config: BreakerConfig, start_ns: int) -> None:
        compiled, reference = self.implementations
        self.sides = (
            Side(compiled, config, start_ns),
            Side(reference, config, start_ns),
        )

    @property
    def fast(self) -> Side:
        assert self.sides is not None
        return self.sides[0]

    @property
    def slow(self) -> Side:
        assert self.sides is not None
        return self.sides[1]

    @rule(step_ns=STEPS_NS)
    def tick(self, step_ns: int) -> None:
        self.fast.clock.now_ns += step_ns
        self.slow.clock.now_ns += step_ns

    @rule()
    def acquire(self) -> None:
        fast = self.fast.breaker.try_acquire()
        slow = self.slow.breaker.try_acquire()
        assert (fast is None) == (slow is None)
        if fast is not None and slow is not None:
            assert fast.generation == slow.generation
            self.held.append((fast, slow))

    @precondition(lambda self: self.held)
    @rule(
        data=st.data(),
        outcome=OUTCOMES,
        duration=DURATIONS,
        back_ns=st.none() | st.integers(0, 3 * S),
    )
    def report(
        self, data: st.DataObject, outcome: str, duration: float, back_ns: int | None
    ) -> None:
        # back_ns: report at an explicit time, possibly before the last one.
        index = data.draw(st.integers(0, len(self.held) - 1))
        now = None if back_ns is None else max(0, self.fast.clock.now_ns - back_ns)
        for permit in self.held.pop(index):
            if outcome == "ok":
                permit.on_success(duration, now)
            elif outcome == "bad_result":
                permit.on_result(duration, "bad", now)
            elif outcome == "fail":
                permit.on_error(duration, Boom(), now)
            elif outcome == "ignored":
                permit.on_error(duration, Ignored(), now)
            elif outcome == "answered":
                permit.on_error(duration, Answered(), now)
            else:
                permit.release(now)

    @rule(outcome=OUTCOMES, duration=DURATIONS)
    def call(self, outcome: str, duration: float) -> None:
        duration_ns = round(duration * S)
        outcome = "ok" if outcome == "release" else outcome
        assert self.fast.call(duration_ns, outcome) == self.slow.call(
            duration_ns, outcome
        )

    @rule(state=st.sampled_from(list(State)))
    def transition(self, state: State) -> None:
        results = []
        for side in (self.fast, self.slow):
            try:
                side.breaker.transition_to(state)
                results.append(None)
            except IllegalTransitionError as exc:
                results.append((exc.source, exc.target))
        assert results[0] == results[1]

    @rule()
    def reset(self) -> None:
        self.fast.breaker.reset()
        self.slow.breaker.reset()

    @invariant()
    def same_observations(self) -> None:
        if self.sides is not None:
            assert self.fast.observe() == self.slow.observe()


def test_compiled_and_reference_decide_alike(compiled: Any, reference: Any) -> None:
    class Machine(SameDecisions):
        implementations = (compiled, reference)

    run_state_machine_as_test(
        Machine,
        settings=settings(max_examples=300, stateful_step_count=60, deadline=None),
    )
