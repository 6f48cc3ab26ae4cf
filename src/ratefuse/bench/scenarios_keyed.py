"""Keyed-limiter benchmark scenarios, shared by ``benchmarks/test_bench_keyed.py``
and any command line that times the keyed engine, so both measure the same
thing (the single-subject scenarios are in :mod:`ratefuse.bench.scenarios`).

Tables are kept *live* for a whole run: every key is loaded with
``PRELOAD_COST`` units of a million-a-day gcra rate, which puts its state
86.4 s ahead of now, so no state goes idle (and none is dropped) while it is
measured, and every decision takes the admitting path, which writes state.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from functools import partial
from itertools import cycle, islice
from typing import Any

from ratefuse.bench.scenarios import (
    CALLS_PER_ROUND,
    Loop,
    Scenario,
    available_implementations,
    calls,
)
from ratefuse.core import implementation as _impl
from ratefuse.rates import Rate, build_specs

__all__ = [
    "CALLS_PER_ROUND",
    "KEYED_GROUP",
    "KEYED_RATE",
    "acquire_loop",
    "decide_many_round",
    "int64_ids",
    "keyed_core",
    "keyed_scenarios",
    "live_keys_name",
    "live_table",
    "memory_per_key",
    "resident_bytes",
    "str_keys",
    "try_acquire_loop",
]

# T = 86.4 ms, burst a million: a quota that never denies in a benchmark.
KEYED_RATE = Rate(1_000_000, 86400.0)
# Puts each state 1,000 * T = 86.4 s ahead of now: live for the whole run.
PRELOAD_COST = 1_000
# Distinct live keys measured; the reference builds only the smaller tables
# (a million keys take it most of a minute).
KEY_COUNTS = (1_000, 100_000, 1_000_000)
REFERENCE_MAX_KEY_COUNT = 100_000
MAX_KEYS = 1_000_000


def str_keys(count: int) -> list[str]:
    """`str_keys` is ``count`` distinct keys shaped like user ids."""
    return [f"user:{index}" for index in range(count)]


def int64_ids(count: int, seed: int = 0) -> Any:
    """`int64_ids` is the ids 0..count-1 as a numpy int64 array, shuffled."""
    import numpy

    return numpy.random.default_rng(seed).permutation(count).astype(numpy.int64)


def keyed_core(
    implementation: _impl.Implementation,
    max_keys: int = MAX_KEYS,
    rate: Rate = KEYED_RATE,
) -> Any:
    """`keyed_core` is an empty keyed gcra limiter of ``implementation``,
    shaped like the public KeyedLimiter (a thin subclass of the core)."""
    core_class = _impl.load("engine._keyed", implementation).KeyedLimiterCore
    limiter_class = type("KeyedLimiter", (core_class,), {})
    return limiter_class(build_specs([rate], "gcra"), max_keys)


def live_table(
    implementation: _impl.Implementation, keys: Any, max_keys: int = MAX_KEYS
) -> Any:
    """`live_table` is a keyed limiter holding a live state for every key
    in ``keys`` (a sequence of keys or an int64 array of ids)."""
    core = keyed_core(implementation, max_keys)
    if not core.decide_many(keys, PRELOAD_COST).all():
        raise RuntimeError("preloading the table was denied")
    if core.stats()["live_keys"] != len(keys):
        raise RuntimeError(f"expected {len(keys)} live keys: {core.stats()}")
    return core


def try_acquire_loop(core: Any, keys: Sequence[object]) -> Loop:
    """`try_acquire_loop(core, keys)(n)` makes ``n`` try_acquire calls,
    walking ``keys`` round and round (it resumes where the last call left
    off, so rounds touch the whole table, not the first n keys)."""
    upcoming = cycle(keys)
    method = core.try_acquire

    def loop(n: int) -> None:
        for key in islice(upcoming, n):
            method(key)

    return loop


def acquire_loop(method: Callable[[], object]) -> Loop:
    """`acquire_loop(method)(n)` calls ``method()`` ``n`` times."""
    return partial(calls, method)


def decide_many_round(core: Any, ids: Any) -> Callable[[], object]:
    """`decide_many_round` decides every id in ``ids`` once, in one batch."""
    return partial(core.decide_many, ids)


def memory_per_key(core: Any) -> float:
    """`memory_per_key` is the table's bytes per live key (stats())."""
    stats: dict[str, int] = core.stats()
    return stats["memory_bytes"] / max(1, stats["live_keys"])


def resident_bytes() -> int | None:
    """`resident_bytes` is this process's resident memory (Linux), else None:
    a check on stats() that counts what the allocator really holds. Memory
    freed to the C allocator (the slots a growing table left behind) is
    first handed back to the system where glibc allows (malloc_trim)."""
    import contextlib
    import ctypes
    import os

    with contextlib.suppress(AttributeError, OSError):  # not glibc: counted
        ctypes.CDLL(None).malloc_trim(0)
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


KEYED_GROUP = "keyed try_acquire"


def live_keys_name(count: int) -> str:
    """`live_keys_name` names the keyed scenario of ``count`` live keys
    ("100k live str keys"); peers' keyed rows use it too, so the report
    compares them with ratefuse's."""
    label = f"{count // 1_000_000}M" if count >= 1_000_000 else f"{count // 1_000}k"
    return f"{label} live str keys"


def _try_acquire_build(implementation: _impl.Implementation, count: int) -> Loop:
    keys = str_keys(count)
    return try_acquire_loop(live_table(implementation, keys), keys)


def __getattr__(name: str) -> Any:
    # KeyedScenario was a copy of Scenario; the old name still resolves.
    if name == "KeyedScenario":
        warnings.warn(
            "KeyedScenario is deprecated: use ratefuse.bench.scenarios.Scenario",
            DeprecationWarning,
            stacklevel=2,
        )
        return Scenario
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def keyed_scenarios(
    implementations: Sequence[_impl.Implementation] | None = None,
) -> list[Scenario]:
    """`keyed_scenarios` is keyed try_acquire per live-key count and
    implementation (the reference stops at REFERENCE_MAX_KEY_COUNT keys)."""
    scenarios = []
    for implementation in implementations or available_implementations():
        for count in KEY_COUNTS:
            if implementation == "python" and count > REFERENCE_MAX_KEY_COUNT:
                continue
            build = partial(_try_acquire_build, implementation, count)
            name = live_keys_name(count)
            scenarios.append(Scenario(KEYED_GROUP, name, implementation, build))
    return scenarios
