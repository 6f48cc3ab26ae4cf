"""Keyed limiter benchmarks, compiled and reference side by side.

- keyed try_acquire with 1k, 100k and 1M live str keys (the reference stops
  at 100k: it takes most of a minute to build a million);
- decide_many over int64 ids, 1k and 1M distinct (reference: 1k and 100k);
- memory per live gcra key at 1M keys (stats() and the process's resident
  memory), in ``extra_info`` and printed;
- blocking acquire against try_acquire when capacity is available.

Run::

    PYTHONPATH=src python -m pytest benchmarks/test_bench_keyed.py \\
        --benchmark-columns=min,median,iqr,ops --benchmark-sort=name -s

A try_acquire or acquire round is ``CALLS_PER_ROUND`` (1,000) calls, so
microseconds per round read as ns per call. A decide_many round is one batch
of every id: 1k ids, so microseconds per round are ns per decision; 1M ids,
so milliseconds per round are ns per decision. Run once with
``--benchmark-disable`` to check that every scenario still works (quick).
Targets (issue 3): 1M live str keys <= 150 ns per try_acquire, 1k <= 90 ns;
<= 48 bytes per live gcra key at 1M; decide_many >= 50M decisions/s; acquire
within 1.5x of try_acquire.
"""

from __future__ import annotations

from typing import Any

import pytest

from ratefuse.bench.scenarios import available_implementations
from ratefuse.bench.scenarios_keyed import (
    CALLS_PER_ROUND,
    acquire_loop,
    decide_many_round,
    int64_ids,
    keyed_core,
    keyed_scenarios,
    live_table,
    memory_per_key,
    resident_bytes,
)
from ratefuse.core import implementation as _impl
from ratefuse.rates import Rate, build_specs

numpy = pytest.importorskip("numpy")

IMPLEMENTATIONS = available_implementations()
SCENARIOS = keyed_scenarios(IMPLEMENTATIONS)
# A rate no benchmark reaches: acquire never has to wait.
NEVER_WAITS = Rate(1_000_000_000, 1.0)


def rounds_for(implementation: str) -> int:
    return 2_000 if implementation == "cython" else 200


def report(benchmark: Any, per_round: int, unit: str) -> None:
    """`report` adds decisions per round, and decisions/s at the median."""
    benchmark.extra_info["decisions_per_round"] = per_round
    stats = getattr(benchmark, "stats", None)
    if stats is not None:  # None with --benchmark-disable
        median = stats.stats.median
        benchmark.extra_info["ns_per_decision"] = median * 1e9 / per_round
        benchmark.extra_info["decisions_per_second"] = per_round / median
        print(
            f"\n{benchmark.name}: {median * 1e9 / per_round:.1f} ns per {unit}, "
            f"{per_round / median:,.0f} {unit}s/s"
        )


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.label for s in SCENARIOS])
def test_keyed_try_acquire(benchmark, scenario) -> None:
    loop = scenario.build()
    benchmark.group = f"{scenario.group} {scenario.name}"
    benchmark.extra_info["calls_per_round"] = CALLS_PER_ROUND
    benchmark.pedantic(
        loop,
        args=(CALLS_PER_ROUND,),
        rounds=rounds_for(scenario.implementation),
        warmup_rounds=20,
    )
    report(benchmark, CALLS_PER_ROUND, "call")


DECIDE_MANY_CASES = [
    (implementation, distinct)
    for implementation in IMPLEMENTATIONS
    for distinct in (1_000, 1_000_000 if implementation == "cython" else 100_000)
]


@pytest.mark.parametrize(
    ("implementation", "distinct"),
    DECIDE_MANY_CASES,
    ids=[
        f"{distinct:_} ids[{implementation}]"
        + (" (1M: too slow to build)" if distinct == 100_000 else "")
        for implementation, distinct in DECIDE_MANY_CASES
    ],
)
def test_decide_many_int64_ids(benchmark, implementation, distinct: int) -> None:
    ids = int64_ids(distinct)
    core = live_table(implementation, ids)
    batch = decide_many_round(core, ids)
    benchmark.group = f"decide_many {distinct:_} distinct int64 ids"
    rounds = max(5, rounds_for(implementation) * 1_000 // distinct)
    # Several batches per round for small batches, so that the timer and
    # the round's own bookkeeping do not dominate a 15 us call.
    iterations = max(1, 20_000 // distinct) if implementation == "cython" else 1
    benchmark.pedantic(batch, rounds=rounds, iterations=iterations, warmup_rounds=2)
    report(benchmark, distinct, "decision")


@pytest.mark.parametrize(
    "implementation",
    IMPLEMENTATIONS,
    ids=[
        f"{name}" + ("" if name == "cython" else " (100k keys: 1M too slow to build)")
        for name in IMPLEMENTATIONS
    ],
)
def test_memory_per_key(benchmark, implementation) -> None:
    live = 1_000_000 if implementation == "cython" else 100_000
    ids = int64_ids(live)  # made first: its 8 bytes a key are not the table's
    before = resident_bytes()
    core = live_table(implementation, ids)
    after = resident_bytes()
    stats = core.stats()
    info = {
        "live_keys": stats["live_keys"],
        "capacity": stats["capacity"],
        "memory_bytes": stats["memory_bytes"],
        "bytes_per_key": round(memory_per_key(core), 2),
    }
    if before is not None and after is not None and implementation == "cython":
        # What the allocator really handed out (the reference's lists of
        # Python ints cost far more than the 8 bytes a word that stats()
        # models, so only the compiled table is compared).
        info["resident_bytes_per_key"] = round((after - before) / live, 2)
    benchmark.extra_info.update(info)
    benchmark.group = "memory per live gcra key"
    print(f"\nmemory per live gcra key [{implementation}]: {info}")
    benchmark(core.stats)


def single_core(implementation: str) -> Any:
    core_class = _impl.load("engine._subject", implementation).LimiterCore
    limiter_class = type("Limiter", (core_class,), {})  # as the public Limiter
    return limiter_class(build_specs([NEVER_WAITS], "gcra"))


ACQUIRE_CASES = [
    (implementation, shape, verb)
    for implementation in IMPLEMENTATIONS
    for shape in ("Limiter", "KeyedLimiter")
    for verb in ("try_acquire", "acquire")
]


@pytest.mark.parametrize(
    ("implementation", "shape", "verb"),
    ACQUIRE_CASES,
    ids=[f"{shape}.{verb}[{impl}]" for impl, shape, verb in ACQUIRE_CASES],
)
def test_acquire_against_try_acquire(benchmark, implementation, shape, verb) -> None:
    if shape == "Limiter":
        method = getattr(single_core(implementation), verb)
    else:
        bound = getattr(keyed_core(implementation, 1_000, NEVER_WAITS), verb)

        def method() -> object:
            return bound("user:42")

    benchmark.group = f"acquire vs try_acquire, capacity available: {shape}"
    benchmark.extra_info["calls_per_round"] = CALLS_PER_ROUND
    benchmark.pedantic(
        acquire_loop(method),
        args=(CALLS_PER_ROUND,),
        rounds=rounds_for(implementation),
        warmup_rounds=20,
    )
    report(benchmark, CALLS_PER_ROUND, "call")
