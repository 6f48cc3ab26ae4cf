"""Adaptive concurrency benchmarks: a permit and its release on an
AdaptiveLimiter next to a Bulkhead's, and the target of issue 19.

Run: ``pytest benchmarks/test_bench_adaptive.py --benchmark-columns=min,median,iqr``;
a round is 1,000 calls, so microseconds per round are ns per call. The
target test times both interleaved (``ratefuse.bench.scenarios.measure``:
each repeat runs every contender once in turn) and compares medians:
an adaptive permit and its release within 2x a Bulkhead's, compiled.
"""

from __future__ import annotations

import pytest

from ratefuse.bench.scenarios import CALLS_PER_ROUND, measure
from ratefuse.bench.scenarios_adaptive import PERMIT_GROUP, adaptive_scenarios
from ratefuse.core import implementation as _impl

SCENARIOS = adaptive_scenarios()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.label for s in SCENARIOS])
def test_adaptive(benchmark, scenario) -> None:
    loop = scenario.build()
    benchmark.group = scenario.group
    benchmark.pedantic(loop, args=(CALLS_PER_ROUND,), rounds=500, warmup_rounds=20)


def test_an_adaptive_permit_costs_at_most_twice_a_bulkhead_permit() -> None:
    if _impl.IMPLEMENTATION != "cython":
        pytest.fail("the target is for the compiled cores: build them")
    contenders = [
        scenario
        for scenario in SCENARIOS
        if scenario.group == PERMIT_GROUP and scenario.name != "adaptive core"
    ]
    bulkhead, adaptive = measure(contenders, repeats=9, sample_seconds=0.01)
    print(
        f"bulkhead {bulkhead.median_ns:.0f} ns, adaptive {adaptive.median_ns:.0f} ns "
        f"({adaptive.median_ns / bulkhead.median_ns:.2f}x)"
    )
    assert adaptive.median_ns <= 2 * bulkhead.median_ns
