"""Limiter decide step per algorithm, compiled and reference side by side.

Run: ``pytest benchmarks/test_bench_limiter.py --benchmark-columns=min,median,iqr``;
a round is 1,000 calls, so microseconds per round are ns per call.
"""

from __future__ import annotations

import pytest

from ratefuse.bench.scenarios import CALLS_PER_ROUND, limiter_scenarios

SCENARIOS = limiter_scenarios()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.label for s in SCENARIOS])
def test_limiter(benchmark, scenario) -> None:
    loop = scenario.build()
    benchmark.group = scenario.group
    rounds = 200 if scenario.implementation == "python" else 2_000
    benchmark.pedantic(loop, args=(CALLS_PER_ROUND,), rounds=rounds, warmup_rounds=20)
