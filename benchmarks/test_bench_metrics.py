"""What metrics cost: try_acquire with the collector registered and being
scraped in a thread, next to try_acquire alone; a scrape of a registry; and
a registry update (the hot reload).

Run: ``pytest benchmarks/test_bench_metrics.py --benchmark-columns=min,median,iqr``;
a round of the try_acquire benchmarks is 1,000 calls, so microseconds per
round are ns per call. The counters themselves cannot be switched off (they
are two integer additions inside the compiled step); their cost against the
engine without them is measured in README ("Metrics") by building both.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ratefuse.bench.scenarios import CALLS_PER_ROUND, calls
from ratefuse.config import Registry
from ratefuse.metrics import register

# A scrape every 5 ms: thousands of times the usual rate (one per 15 s), so
# that any contention between scraping and deciding would show.
SCRAPE_INTERVAL_S = 0.005
LIMITERS = 50


def _registry(count: int = LIMITERS) -> Registry:
    return Registry(
        {
            "limiters": {
                f"api{index}": {"rate": "1000000000/s"} for index in range(count)
            },
            "breakers": {f"dep{index}": {} for index in range(count // 10)},
        }
    )


@pytest.fixture
def scraping() -> Iterator[Registry]:
    """`scraping` is a registry whose collector a thread scrapes every 5 ms
    while the benchmark runs."""
    registry = _registry()
    prometheus = CollectorRegistry()
    register(registry, prometheus)
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(SCRAPE_INTERVAL_S):
            generate_latest(prometheus)

    thread = threading.Thread(target=scrape)
    thread.start()
    yield registry
    stop.set()
    thread.join()


def test_try_acquire_alone(benchmark) -> None:
    benchmark.group = "try_acquire gcra, metrics"
    loop = partial(calls, _registry().limiter("api0").try_acquire)  # type: ignore[union-attr]
    benchmark.pedantic(loop, args=(CALLS_PER_ROUND,), rounds=2_000, warmup_rounds=20)


def test_try_acquire_while_scraped(benchmark, scraping: Registry) -> None:
    benchmark.group = "try_acquire gcra, metrics"
    loop = partial(calls, scraping.limiter("api0").try_acquire)  # type: ignore[union-attr]
    benchmark.pedantic(loop, args=(CALLS_PER_ROUND,), rounds=2_000, warmup_rounds=20)


def test_scrape(benchmark) -> None:
    benchmark.group = f"scrape of {LIMITERS} limiters, {LIMITERS // 10} breakers"
    prometheus = CollectorRegistry()
    register(_registry(), prometheus)
    benchmark.pedantic(generate_latest, args=(prometheus,), rounds=200, warmup_rounds=5)


def test_update(benchmark) -> None:
    benchmark.group = f"update of {LIMITERS} limiters (hot reload)"
    registry = _registry()
    # Whole configs, as a reload reads them: one that lacked the breakers
    # would be refused for dropping them.
    configs = [
        {
            "limiters": {f"api{index}": {"rate": rate} for index in range(LIMITERS)},
            "breakers": {f"dep{index}": {} for index in range(LIMITERS // 10)},
        }
        for rate in ("100/s", "200/s")
    ]
    flips = iter(range(10**9))

    def update() -> None:
        registry.update(configs[next(flips) % 2])

    benchmark.pedantic(update, rounds=200, warmup_rounds=5)
