"""Shared-memory limiter: cost per decision in one process, next to the
in-memory limiters, and decisions/s with 1, 2 and 4 processes.

Run: ``pytest benchmarks/test_bench_shm.py --benchmark-columns=min,median,iqr``.
Single-process rounds are 1,000 calls, so microseconds per round are ns
per call. The multi-process cases run ``ratefuse.bench.scenarios_shm.throughput``
once each and put decisions/s (median of 7 rounds, with min and max) in
``extra_info`` (``--benchmark-json``) and on stdout (``-s``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from itertools import cycle, islice, repeat

import pytest

from ratefuse import KeyedLimiter, Limiter
from ratefuse.bench.scenarios import CALLS_PER_ROUND, available_implementations
from ratefuse.bench.scenarios_shm import BACKENDS, KEY_PATTERNS, throughput
from ratefuse.core import implementation as _impl
from ratefuse.rates import Rate, build_specs
from ratefuse.shm import ShmBackend

FAST = Rate(1_000_000_000, 1.0)  # every call admitted: the writing path
MANY = 1_000


def shm_core(directory, implementation: str, single: bool = False):
    """`shm_core` is a core on a new table, unlinked at once (the mapping
    stays valid, and nothing is left behind)."""
    kind = 2 if single else 1
    backend = ShmBackend(directory / f"{implementation}-{kind}", 4 * MANY)
    table = backend.open_table(build_specs([FAST], "gcra")[0], kind, implementation)
    backend.unlink()
    module = _impl.load("engine._shm", implementation)  # type: ignore[arg-type]
    return (module.ShmLimiterCore if single else module.ShmKeyedLimiterCore)(table)


def one_key(method: Callable[..., object], *args: object) -> Callable[[int], None]:
    def loop(n: int) -> None:
        for _ in repeat(None, n):
            method(*args)

    return loop


def many_keys(method: Callable[[object], object]) -> Callable[[int], None]:
    keys = list(range(MANY))

    def loop(n: int) -> None:
        for key in islice(cycle(keys), n):
            method(key)

    return loop


Build = Callable[[object], Callable[[int], None]]
CASES: dict[str, Build] = {
    "memory Limiter": lambda _: one_key(Limiter(FAST).try_acquire),
    "memory KeyedLimiter, one key": lambda _: one_key(
        KeyedLimiter(FAST).try_acquire, "k"
    ),
    "memory KeyedLimiter, 1,000 keys": lambda _: many_keys(
        KeyedLimiter(FAST).try_acquire
    ),
}
for _implementation in available_implementations():
    CASES[f"shm ShmLimiter [{_implementation}]"] = partial(
        lambda name, directory: one_key(shm_core(directory, name, True).try_acquire),
        _implementation,
    )
    CASES[f"shm one key [{_implementation}]"] = partial(
        lambda name, directory: one_key(shm_core(directory, name).try_acquire, "k"),
        _implementation,
    )
    CASES[f"shm 1,000 keys [{_implementation}]"] = partial(
        lambda name, directory: many_keys(shm_core(directory, name).try_acquire),
        _implementation,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_try_acquire(benchmark, tmp_path, name: str) -> None:
    loop = CASES[name](tmp_path)
    benchmark.group = "shm vs memory: try_acquire, one process"
    rounds = 100 if "python" in name else 2_000
    benchmark.pedantic(loop, args=(CALLS_PER_ROUND,), rounds=rounds, warmup_rounds=20)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("keys", KEY_PATTERNS)
@pytest.mark.parametrize("processes", [1, 2, 4])
def test_processes(benchmark, backend: str, keys: str, processes: int) -> None:
    benchmark.group = f"decisions/s, {keys} key(s)"
    small = benchmark.disabled
    sizes = {"decisions": 20_000, "rounds": 1} if small else {}
    result = benchmark.pedantic(
        throughput,
        args=(processes, keys),
        kwargs={"backend": backend, **sizes},
        rounds=1,
        iterations=1,
    )
    benchmark.extra_info.update(
        total_per_s=result.total_median,
        total_min_per_s=result.total_min,
        total_max_per_s=result.total_max,
        per_process_per_s=result.per_process_median,
        per_cpu_second=result.per_cpu_second_median,
        load_average=result.load_average,
    )
    print(
        f"\n{backend} {keys} x{processes}: {result.total_median / 1e6:.2f} M/s "
        f"({result.total_min / 1e6:.2f}-{result.total_max / 1e6:.2f}), "
        f"{result.per_process_median / 1e6:.2f} M/s per process"
    )
