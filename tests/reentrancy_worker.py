"""A process that decides on a limiter from inside its own decisions.

Run as ``python reentrancy_worker.py IMPL KIND HOW [TABLE]``: IMPL is
``cython`` or ``python``, KIND ``single``, ``keyed``, ``shm-single`` or
``shm-keyed``, HOW ``finalizer`` (a garbage cycle whose ``__del__``
decides, reserves and cancels on the limiter, with the collector run on
every allocation) or ``signal`` (a SIGALRM handler every 200 us that does
the same). Prints ``done <nested calls> <nested admitted>`` and exits 0,
or hangs: the test runs it under a timeout.
"""

from __future__ import annotations

import gc
import signal
import sys
from typing import Any

from ratefuse.core import implementation
from ratefuse.rates import Rate, build_specs

ROUNDS = 3000


def build(impl: str, kind: str, table: str | None) -> tuple[Any, tuple[object, ...]]:
    rate = Rate(10**6, 1.0)
    if kind.startswith("shm"):
        from ratefuse.engine import shm_layout as layout
        from ratefuse.shm import ShmBackend

        single = kind == "shm-single"
        spec = build_specs([rate], "gcra")[0]
        kind_id = layout.KIND_SINGLE if single else layout.KIND_KEYED
        backend = ShmBackend(table, max_keys=64)
        shm_table = backend.open_table(spec, kind_id, impl, bytes(range(16)))
        module = implementation.load("engine._shm", impl)  # type: ignore[arg-type]
        cls = module.ShmLimiterCore if single else module.ShmKeyedLimiterCore
        return cls(shm_table), (() if single else ("k",))
    specs = build_specs([rate, Rate(10**7, 60.0)], "gcra")  # two limits
    if kind == "single":
        module = implementation.load("engine._subject", impl)  # type: ignore[arg-type]
        return module.LimiterCore(specs), ()
    module = implementation.load("engine._keyed", impl)  # type: ignore[arg-type]
    return module.KeyedLimiterCore(specs, 64), ("k",)


def main() -> None:
    impl, kind, how = sys.argv[1:4]
    core, args = build(impl, kind, sys.argv[4] if len(sys.argv) > 4 else None)
    nested: list[bool] = []
    busy = [False]

    def decide_nested() -> None:
        if busy[0]:
            return  # a handler interrupted by the next signal: not recursive
        busy[0] = True
        try:
            decide_once()
        finally:
            busy[0] = False

    def decide_once() -> None:
        nested.append(core.decide(*args).allowed)
        core.reserve(*args).cancel()
        core.reset(*args) if len(nested) % 97 == 0 else None

    class Bomb:
        def __init__(self) -> None:
            self.me = self  # a cycle: only the collector frees it

        def __del__(self) -> None:
            decide_nested()
            Bomb()  # the next collection has one too

    if how == "finalizer":
        Bomb()
        gc.set_threshold(1)
    else:
        signal.signal(signal.SIGALRM, lambda *_: decide_nested())
        signal.setitimer(signal.ITIMER_REAL, 200e-6, 200e-6)
    # The reference is slower, and its finalizers run on most allocations.
    rounds = ROUNDS if impl == "cython" else ROUNDS // (10 if how == "finalizer" else 3)
    for _ in range(rounds):
        # Lists and tuples come from free lists, which never run the
        # collector: keep enough alive that the core's allocate afresh.
        drained = [[] for _ in range(100)]
        core.reserve(*args, 2).cancel()
        core.decide(*args)
        core.try_acquire(*args)
        del drained
    signal.setitimer(signal.ITIMER_REAL, 0)
    gc.set_threshold(700)
    assert core.decide(*args).allowed, "the limiter still decides"
    print("done", len(nested), sum(nested), flush=True)


if __name__ == "__main__":
    main()
