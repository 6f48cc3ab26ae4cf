"""Hypothesis strategies shared by the differential and property tests."""

from __future__ import annotations

from hypothesis import strategies as st

from ratefuse.core.algorithms import REGISTRY
from ratefuse.rates import BURST_ALGORITHMS, Rate

# Every registered algorithm: a new one is in every differential test at once.
ALGORITHMS = [record.name for record in REGISTRY]

# Periods in ns: round ones, and awkward ones that make period / limit inexact.
PERIODS_NS = st.sampled_from([1_000, 7_919, 1_000_000, 999_999_937, 1_000_000_000])


@st.composite
def rates(draw: st.DrawFn, algorithm: str) -> Rate:
    """`rates` draws a small valid Rate for ``algorithm``."""
    period_ns = draw(PERIODS_NS)
    limit = draw(st.integers(1, 12))
    burst = None
    if algorithm in BURST_ALGORITHMS:
        burst = draw(st.none() | st.integers(1, 15))
    return Rate(limit, period_ns / 1e9, burst)


@st.composite
def traces(
    draw: st.DrawFn, period_ns: int, max_cost: int, backwards: bool = True
) -> list[tuple[int, int]]:
    """`traces` draws (now_ns, cost) pairs: mostly small steps forward, some
    long pauses, and (if ``backwards``) a few steps back in time."""
    # Boundaries are where cores go wrong: steps of exactly a period, or a
    # nanosecond either side of one, are drawn as often as arbitrary ones.
    step = st.one_of(
        st.just(0),
        st.integers(1, 3),
        st.sampled_from([period_ns - 1, period_ns, period_ns + 1, period_ns // 2]),
        st.integers(0, max(1, period_ns // 8)),
        st.integers(0, 3 * period_ns),
    )
    if backwards:
        step = step | st.integers(-period_ns, 0)
    now = draw(st.integers(0, 5 * period_ns))
    trace = []
    for _ in range(draw(st.integers(1, 60))):
        now = max(0, now + draw(step))
        trace.append((now, draw(st.integers(0, max_cost + 1))))
    return trace
