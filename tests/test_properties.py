"""Properties of the reference cores, the spec every implementation matches.

The differential tests hold the compiled engine to the reference; these hold
the reference to the algorithms' definitions: retry_after, remaining and
reset_after are exact to the nanosecond, and no algorithm admits more than
its bound.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse.core.spec import NEVER
from ratefuse.engine._subject_py import LimiterCore
from ratefuse.rates import Rate, build_specs
from strategies import ALGORITHMS, rates, traces

EXAMPLES = settings(max_examples=200, deadline=None)


def clone(core: LimiterCore) -> LimiterCore:
    twin = LimiterCore(core._specs)
    twin._state = list(core._state)
    return twin


def decide_ns(core: LimiterCore, cost: int, now: int):  # -> StepResult
    return core._decide(cost, now)[0]


def forward_trace(
    data: st.DataObject, algorithm: str
) -> tuple[Rate, list[tuple[int, int]]]:
    rate = data.draw(rates(algorithm))
    return rate, data.draw(traces(rate.period_ns, rate.capacity, backwards=False))


@EXAMPLES
@given(data=st.data(), algorithm=st.sampled_from(ALGORITHMS))
def test_retry_after_is_exact(data: st.DataObject, algorithm: str) -> None:
    rate, trace = forward_trace(data, algorithm)
    core = LimiterCore(build_specs([rate], algorithm))
    for now, cost in trace:
        before = clone(core)
        verdict = decide_ns(core, cost, now)
        if verdict.allowed or verdict.retry_after_ns == NEVER:
            assert verdict.allowed or cost > rate.capacity
            continue
        retry = verdict.retry_after_ns
        assert retry > 0
        assert decide_ns(clone(before), cost, now + retry).allowed
        assert not decide_ns(clone(before), cost, now + retry - 1).allowed


@EXAMPLES
@given(data=st.data(), algorithm=st.sampled_from(ALGORITHMS))
def test_remaining_is_exact(data: st.DataObject, algorithm: str) -> None:
    rate, trace = forward_trace(data, algorithm)
    core = LimiterCore(build_specs([rate], algorithm))
    for now, cost in trace:
        remaining = decide_ns(core, cost, now).remaining
        assert 0 <= remaining <= rate.capacity
        assert decide_ns(clone(core), remaining, now).allowed
        assert not decide_ns(clone(core), remaining + 1, now).allowed


@EXAMPLES
@given(data=st.data(), algorithm=st.sampled_from(ALGORITHMS))
def test_reset_after_is_exact(data: st.DataObject, algorithm: str) -> None:
    rate, trace = forward_trace(data, algorithm)
    core = LimiterCore(build_specs([rate], algorithm))
    for now, cost in trace:
        reset = decide_ns(core, cost, now).reset_after_ns
        assert decide_ns(clone(core), 0, now + reset).remaining == rate.capacity
        if reset > 0:
            assert decide_ns(clone(core), 0, now + reset - 1).remaining < rate.capacity


def admitted(
    algorithm: str, rate: Rate, trace: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    core = LimiterCore(build_specs([rate], algorithm))
    return [
        (now, cost) for now, cost in trace if cost and core.try_acquire(cost, now=now)
    ]


@EXAMPLES
@given(data=st.data(), algorithm=st.sampled_from(["gcra", "leaky_bucket"]))
def test_meters_hold_burst_plus_rate(data: st.DataObject, algorithm: str) -> None:
    rate, trace = forward_trace(data, algorithm)
    grants = admitted(algorithm, rate, trace)
    for i, (start, _) in enumerate(grants):
        total = 0
        for end, cost in grants[i:]:
            total += cost
            assert total <= rate.capacity + (end - start) // rate.interval_ns


@EXAMPLES
@given(data=st.data(), algorithm=st.sampled_from(["fixed_window", "sliding_window"]))
def test_windows_hold_the_limit_per_window(data: st.DataObject, algorithm: str) -> None:
    rate, trace = forward_trace(data, algorithm)
    per_window: dict[int, int] = {}
    for now, cost in admitted(algorithm, rate, trace):
        window = now // rate.period_ns
        per_window[window] = per_window.get(window, 0) + cost
        assert per_window[window] <= rate.limit


@EXAMPLES
@given(data=st.data())
def test_sliding_log_holds_the_limit_in_every_period(data: st.DataObject) -> None:
    rate, trace = forward_trace(data, "sliding_log")
    grants = admitted("sliding_log", rate, trace)
    for end, _ in grants:
        in_period = sum(c for t, c in grants if end - rate.period_ns < t <= end)
        assert in_period <= rate.limit


@EXAMPLES
@given(data=st.data())
def test_leaky_bucket_meter_decides_like_gcra(data: st.DataObject) -> None:
    rate, trace = forward_trace(data, "gcra")
    gcra = LimiterCore(build_specs([rate], "gcra"))
    leaky = LimiterCore(build_specs([rate], "leaky_bucket"))
    for now, cost in trace:
        assert gcra.decide(cost, now=now) == leaky.decide(cost, now=now)
