"""Differential tests: the compiled and reference engines decide alike.

Hypothesis drives random traces of (time, cost) through both and requires
identical Decisions, for every algorithm and for compound limits.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse.rates import Rate, build_specs
from strategies import ALGORITHMS, rates, traces

EXAMPLES = settings(max_examples=300, deadline=None)


def assert_same_decisions(compiled, reference, specs, trace) -> None:
    fast = compiled.module("engine._subject").LimiterCore(specs)
    slow = reference.module("engine._subject").LimiterCore(specs)
    for step, (now, cost) in enumerate(trace):
        expected = slow.decide(cost, now=now)
        assert fast.decide(cost, now=now) == expected, f"step {step}: {now=} {cost=}"


@EXAMPLES
@given(data=st.data(), algorithm=st.sampled_from(ALGORITHMS))
def test_single_limit(compiled, reference, data: st.DataObject, algorithm: str) -> None:
    rate = data.draw(rates(algorithm))
    trace = data.draw(traces(rate.period_ns, rate.capacity))
    assert_same_decisions(compiled, reference, build_specs([rate], algorithm), trace)


@EXAMPLES
@given(data=st.data(), algorithm=st.sampled_from(ALGORITHMS))
def test_compound_limits(
    compiled, reference, data: st.DataObject, algorithm: str
) -> None:
    limits = data.draw(st.lists(rates(algorithm), min_size=2, max_size=3))
    shortest = min(rate.period_ns for rate in limits)
    trace = data.draw(traces(shortest, max(rate.capacity for rate in limits)))
    assert_same_decisions(compiled, reference, build_specs(limits, algorithm), trace)


@EXAMPLES
@given(data=st.data())
def test_try_acquire_matches_decide(compiled, reference, data: st.DataObject) -> None:
    algorithm = data.draw(st.sampled_from(ALGORITHMS))
    rate = data.draw(rates(algorithm))
    specs = build_specs([rate], algorithm)
    trace = data.draw(traces(rate.period_ns, rate.capacity))
    for impl in (compiled, reference):
        deciding = impl.module("engine._subject").LimiterCore(specs)
        trying = impl.module("engine._subject").LimiterCore(specs)
        for now, cost in trace:
            assert (
                trying.try_acquire(cost, now=now)
                is deciding.decide(cost, now=now).allowed
            )


@EXAMPLES
@given(data=st.data(), algorithm=st.sampled_from(["gcra", "leaky_bucket"]))
def test_extreme_configurations_stay_inside_int64(
    compiled, reference, data: st.DataObject, algorithm: str
) -> None:
    # The largest tolerance the validation admits (2**60 ns), time near the
    # largest allowed now (2**62) and reservations with unbounded waits: the
    # compiled engine must not wrap around where the reference's big ints
    # would not (a regression test for an int64 overflow).
    burst = data.draw(st.sampled_from([1, 2, 4]))
    rate = Rate(1, (1 << 58) / 1e9, burst=burst)  # tau = burst * 2**58 <= 2**60
    specs = build_specs([rate], algorithm)
    fast = compiled.module("engine._subject").LimiterCore(specs)
    slow = reference.module("engine._subject").LimiterCore(specs)
    now = data.draw(st.sampled_from([0, (1 << 62) - (1 << 61), 1 << 62]))
    for _ in range(data.draw(st.integers(1, 40))):
        cost = data.draw(st.integers(0, burst + 1))
        if data.draw(st.booleans()):
            expected = slow.reserve(cost, None, now)
            got = fast.reserve(cost, None, now)
            assert (got.ok, got.delay, got.decision) == (
                expected.ok,
                expected.delay,
                expected.decision,
            )
        else:
            assert fast.decide(cost, now=now) == slow.decide(cost, now=now)
