"""Multi-process throughput of the shared-memory limiter, next to the
in-memory one: the measurement behind ``benchmarks/test_bench_shm.py`` and
the README's figures.

`throughput` starts N processes (spawned, so it is safe from any parent),
lines them up on a barrier and has each make a fixed number of
``try_acquire`` decisions per round, at a rate so high that every decision
is admitted and writes the state. Keys: ``"one"`` (every process on the
same key: the worst case, one contended cache line), ``"distinct"`` (one
key per process) or ``"many"`` (each process cycles through 10,000 keys of
its own). Backend ``"shm"`` shares one table; ``"memory"`` gives each
process its own :class:`ratefuse.KeyedLimiter` (no sharing: the baseline).

Run ``python -m ratefuse.bench.scenarios_shm`` for the table in the README.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from itertools import repeat
from typing import Any, Final

MANY_KEYS: Final = 10_000
KEY_PATTERNS: Final = ("one", "distinct", "many")
BACKENDS: Final = ("shm", "memory")
_FAST: Final = "1000000000/s"


@dataclass(frozen=True)
class Throughput:
    """`Throughput` is decisions per second over repeated rounds: the
    median of the total (all processes, wall clock) with its min and max,
    the median per process, and the median per process per CPU-second
    (what each process would do with a core of its own: on a loaded
    machine, the wall-clock total measures the machine, this the limiter).
    ``load_average`` is the host's 1-minute load when the run started."""

    backend: str
    processes: int
    keys: str
    total_median: float
    total_min: float
    total_max: float
    per_process_median: float
    per_cpu_second_median: float
    load_average: float


def _limiter(backend: str, path: str) -> Any:
    if backend == "shm":
        from ratefuse.shm import ShmBackend, ShmKeyedLimiter

        return ShmKeyedLimiter(_FAST, backend=ShmBackend(path, 2 * MANY_KEYS * 4))
    from ratefuse.keyed import KeyedLimiter

    return KeyedLimiter(_FAST)


def _worker(
    backend: str,
    path: str,
    keys: str,
    index: int,
    processes: int,
    decisions: int,
    rounds: int,
    start: Any,
    elapsed: Any,
    cpu: Any,
) -> None:
    # Each round: wait for all, decide, record this process's wall and
    # CPU seconds.
    limiter = _limiter(backend, path)
    try_acquire = limiter.try_acquire
    if keys == "many":
        pool = [index * MANY_KEYS + key for key in range(MANY_KEYS)]
        sequence = (pool * (decisions // MANY_KEYS + 1))[:decisions]
    else:
        key = "shared" if keys == "one" else f"process-{index}"
    for round_index in range(rounds):
        start.wait()
        began, began_cpu = time.perf_counter_ns(), time.process_time_ns()
        if keys == "many":
            for each in sequence:
                try_acquire(each)
        else:
            for _ in repeat(None, decisions):
                try_acquire(key)
        slot = round_index * processes + index
        elapsed[slot] = (time.perf_counter_ns() - began) / 1e9
        cpu[slot] = (time.process_time_ns() - began_cpu) / 1e9


def throughput(
    processes: int,
    keys: str = "one",
    *,
    backend: str = "shm",
    decisions: int = 1_000_000,
    rounds: int = 7,
) -> Throughput:
    """`throughput` measures ``processes`` processes making ``decisions``
    decisions each per round, over ``rounds`` rounds (see the module doc).
    A round's total is all decisions over the slowest process's time."""
    if keys not in KEY_PATTERNS or backend not in BACKENDS:
        raise ValueError(
            f"keys must be one of {KEY_PATTERNS}, backend one of {BACKENDS}"
        )
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(processes)
    elapsed = context.RawArray("d", processes * rounds)
    cpu = context.RawArray("d", processes * rounds)
    load_average = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="ratefuse-bench-") as directory:
        path = os.path.join(directory, "table")
        workers = [
            context.Process(
                target=_worker,
                args=(
                    *(backend, path, keys, index, processes, decisions, rounds),
                    *(start, elapsed, cpu),
                ),
            )
            for index in range(processes)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if any(worker.exitcode != 0 for worker in workers):
            raise RuntimeError("a benchmark process failed")
    totals: list[float] = []
    per_process: list[float] = []
    for round_index in range(rounds):
        times = elapsed[round_index * processes : (round_index + 1) * processes]
        totals.append(processes * decisions / max(times))
        per_process.extend(decisions / seconds for seconds in times)
    per_cpu_second = [decisions / max(seconds, 1e-9) for seconds in cpu]
    return Throughput(
        backend,
        processes,
        keys,
        statistics.median(totals),
        min(totals),
        max(totals),
        statistics.median(per_process),
        statistics.median(per_cpu_second),
        load_average,
    )


def main() -> None:  # pragma: no cover - prints the README table
    """`main` prints decisions/s for 1, 2 and 4 processes per key pattern."""
    print(
        "backend keys      procs  total M/s (median, min-max)  per process M/s"
        "  per CPU-second M/s  load"
    )
    for backend in BACKENDS:
        for keys in KEY_PATTERNS:
            for processes in (1, 2, 4):
                result = throughput(processes, keys, backend=backend)
                spread = f"{result.total_min / 1e6:.2f}-{result.total_max / 1e6:.2f}"
                print(
                    f"{backend:7} {keys:9} {processes:5}  "
                    f"{result.total_median / 1e6:6.2f} ({spread:11})"
                    f"{result.per_process_median / 1e6:15.2f}"
                    f"{result.per_cpu_second_median / 1e6:20.2f}"
                    f"{result.load_average:7.2f}"
                )


if __name__ == "__main__":  # pragma: no cover
    main()
