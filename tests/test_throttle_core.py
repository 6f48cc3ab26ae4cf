"""The adaptive throttle's core, both twins: the SRE formula on a fixed
time grid, and the same decisions on random traces (Hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

SECOND = 1_000_000_000
DRAW_RANGE = 1 << 20
EXAMPLES = settings(max_examples=300, deadline=None)


def make(impl: Any, buckets: int = 10, bucket_ns: int = SECOND, k_milli: int = 2000):
    return impl.module("core._throttle").ThrottleCore(buckets, bucket_ns, k_milli)


def test_a_healthy_upstream_is_never_throttled(impl: Any) -> None:
    core = make(impl)
    for _ in range(100):
        assert core.decide(0, 0)
        core.record(True, 0)
    assert core.totals(0) == (100, 100)
    assert core.counters() == (100, 0, 100, 0)


def test_throttling_starts_below_an_accept_ratio_of_one_over_k(impl: Any) -> None:
    # K = 2: 10 requests with 5 accepts is the edge (10 - 2*5 = 0).
    core = make(impl)
    for accepted in [True] * 5 + [False] * 5:
        core.record(accepted, 0)
    assert core.decide(0, 0)  # draw 0 is refused by any positive probability
    core.record(False, 0)  # 11 requests, 5 accepts: p = 1/12
    assert not core.decide(0, 0)
    # The refusal counted as a request: 12 requests, 5 accepts, p = 2/13.
    assert core.totals(0) == (12, 5)
    boundary = 2 * DRAW_RANGE // 13
    assert not core.decide(0, boundary)  # 13 requests now: p = 3/14
    assert core.decide(0, DRAW_RANGE - 1)


def test_the_probability_follows_the_formula(impl: Any) -> None:
    # requests - K*accepts over requests + 1, for K = 1.5.
    core = make(impl, k_milli=1500)
    for accepted in [True] * 10 + [False] * 30:
        core.record(accepted, 0)
    # (40 - 15) / 41 of the draws refuse: the draws below the threshold.
    threshold = -(-25 * DRAW_RANGE // 41)
    assert core.decide(0, threshold)
    assert core.totals(0) == (40, 10)  # an admitted request counts later
    assert not core.decide(0, threshold - 1)


def test_old_outcomes_leave_the_window(impl: Any) -> None:
    core = make(impl, buckets=10, bucket_ns=SECOND)
    for _ in range(50):
        core.record(False, 0)
    assert not core.decide(0, 0)
    # Bucket 0 leaves the window once bucket 10 is the newest.
    assert core.totals(9 * SECOND) == (51, 0)
    assert core.totals(10 * SECOND) == (0, 0)
    assert core.decide(10 * SECOND, 0)


def test_clear_empties_the_window_but_not_the_counters(impl: Any) -> None:
    core = make(impl)
    core.record(False, 0)
    assert not core.decide(0, 0)
    core.clear()
    assert core.totals(0) == (0, 0)
    assert core.decide(0, 0)
    assert core.counters() == (1, 1, 0, 1)


step = st.one_of(
    st.tuples(st.just("decide"), st.integers(0, DRAW_RANGE - 1)),
    st.tuples(st.just("record"), st.booleans()),
    st.tuples(st.just("totals"), st.none()),
)


@EXAMPLES
@given(
    buckets=st.integers(1, 8),
    bucket_ns=st.integers(1, 5),
    k_milli=st.integers(1000, 4000),
    trace=st.lists(st.tuples(st.integers(0, 6), step), max_size=200),
)
def test_the_twins_decide_alike(
    compiled: Any,
    reference: Any,
    buckets: int,
    bucket_ns: int,
    k_milli: int,
    trace: list[tuple[int, tuple[str, object]]],
) -> None:
    cores = [make(impl, buckets, bucket_ns, k_milli) for impl in (compiled, reference)]
    now = 0
    for advance, (verb, argument) in trace:
        now += advance  # the throttle's clock is monotonic
        answers = [
            core.decide(now, argument) if verb == "decide" else None for core in cores
        ]
        if verb == "record":
            for core in cores:
                core.record(argument, now)
        elif verb == "totals":
            answers = [core.totals(now) for core in cores]
        assert answers[0] == answers[1], (verb, now)
    assert cores[0].counters() == cores[1].counters()
