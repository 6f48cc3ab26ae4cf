"""Fleet breaker: what recording an outcome and asking for a permit cost on
a FleetBreaker (its background flusher sending batches to a real Redis on
loopback) next to a local CircuitBreaker, both on the compiled cores.

Run: ``pytest benchmarks/test_bench_fleet_breaker.py
--benchmark-columns=min,median,iqr``; a round is 1,000 calls, so
microseconds per round are ns per call. ``test_record_interleaved``
alternates local and fleet rounds (so that a busy machine slows both
alike) and stores the medians, their ratio and the spread of the ratio in
``extra_info``. Target (issue 6): recording an outcome on the fleet breaker
costs at most 2x the local breaker's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

redis = pytest.importorskip("redis")

from ratefuse.bench.scenarios import CALLS_PER_ROUND  # noqa: E402
from ratefuse.breaker import BreakerConfig, CircuitBreaker  # noqa: E402
from ratefuse.redis import FleetBreaker  # noqa: E402

# Never trips: the loops measure CLOSED.
CONFIG = BreakerConfig(failure_rate_threshold=100.0, minimum_calls=1_000_000)
PAIRS = 31


@pytest.fixture(scope="module")
def breakers(node: Any) -> Iterator[dict[str, Any]]:
    client = redis.Redis(host="127.0.0.1", port=node.port)
    fleet = FleetBreaker("bench-fleet", CONFIG, client=client, timeout=5.0)
    try:
        yield {"local": CircuitBreaker("bench-local", CONFIG), "fleet": fleet}
    finally:
        fleet.close()
        client.close()


def record_loop(breaker: Any) -> Callable[[int], None]:
    permit = breaker.try_acquire()
    on_success = permit.on_success

    def loop(calls: int) -> None:
        for _ in range(calls):
            on_success(0.0)

    return loop


def acquire_loop(breaker: Any) -> Callable[[int], None]:
    try_acquire = breaker.try_acquire

    def loop(calls: int) -> None:
        for _ in range(calls):
            try_acquire()

    return loop


def call_loop(breaker: Any) -> Callable[[int], None]:
    # The two-step form: a permit, then its outcome.
    try_acquire = breaker.try_acquire

    def loop(calls: int) -> None:
        for _ in range(calls):
            try_acquire().on_success(0.0)

    return loop


LOOPS = {"record": record_loop, "try_acquire": acquire_loop, "two_step": call_loop}


@pytest.mark.parametrize("kind", ["local", "fleet"])
@pytest.mark.parametrize("step", list(LOOPS))
def test_fleet_breaker(benchmark, breakers, step: str, kind: str) -> None:
    loop = LOOPS[step](breakers[kind])
    benchmark.group = f"fleet-breaker {step}"
    benchmark.pedantic(loop, args=(CALLS_PER_ROUND,), rounds=2_000, warmup_rounds=20)


def test_record_interleaved(benchmark, breakers) -> None:
    loops = {kind: record_loop(breakers[kind]) for kind in ("local", "fleet")}

    def compare() -> None:
        times: dict[str, list[float]] = {"local": [], "fleet": []}
        for _ in range(PAIRS):
            for kind, loop in loops.items():
                started = time.perf_counter_ns()
                loop(CALLS_PER_ROUND)
                times[kind].append((time.perf_counter_ns() - started) / CALLS_PER_ROUND)
        ratios = sorted(
            fleet / local
            for fleet, local in zip(times["fleet"], times["local"], strict=True)
        )
        benchmark.extra_info.update(
            local_ns=statistics.median(times["local"]),
            fleet_ns=statistics.median(times["fleet"]),
            ratio_median=statistics.median(ratios),
            ratio_p10=ratios[len(ratios) // 10],
            ratio_p90=ratios[len(ratios) * 9 // 10],
        )

    benchmark.group = "fleet-breaker record, interleaved"
    benchmark.pedantic(compare, rounds=1, iterations=1)
