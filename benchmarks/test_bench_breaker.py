"""Breaker benchmarks: what guarding a call costs, compiled and reference
side by side, next to the floors (empty loop, bare call, raise and catch).

Run: ``pytest benchmarks/test_bench_breaker.py --benchmark-columns=min,median,iqr``;
a round is 1,000 calls, so microseconds per round are ns per call. The
scenarios live in ``ratefuse.bench.scenarios_breaker`` so the command line can
measure the same loops. Targets (issue 4): CLOSED decorator <= 80 ns above
the bare call; try_acquire plus on_success <= 60 ns; OPEN rejection >= 10M/s
through try_acquire and <= 400 ns through the decorator.
"""

from __future__ import annotations

import pytest

from ratefuse.bench.scenarios import CALLS_PER_ROUND
from ratefuse.bench.scenarios_breaker import breaker_scenarios

SCENARIOS = breaker_scenarios()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.label for s in SCENARIOS])
def test_breaker(benchmark, scenario) -> None:
    loop = scenario.build()
    benchmark.group = scenario.group
    rounds = 200 if scenario.implementation == "python" else 2_000
    benchmark.pedantic(loop, args=(CALLS_PER_ROUND,), rounds=rounds, warmup_rounds=20)
