"""Differential tests: the compiled and reference engines decide alike.

Hypothesis drives random traces of (time, cost) through both and requires
identical Decisions, for every algorithm and for compound limits.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse.rates import build_specs
from strategies import ALGORITHMS, rates, traces

EXAMPLES = settings(max_examples=300, deadline=None)


def assert_same_decisions(compiled, reference, specs, trace) -> None:
    fast = compiled.module("_engine").LimiterCore(specs)
    slow = reference.module("_engine").LimiterCore(specs)
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
        deciding = impl.module("_engine").LimiterCore(specs)
        trying = impl.module("_engine").LimiterCore(specs)
        for now, cost in trace:
            assert (
                trying.try_acquire(cost, now=now)
                is deciding.decide(cost, now=now).allowed
            )
