"""Adaptive concurrency benchmark scenarios: a permit and its release, on
an AdaptiveLimiter and on a Bulkhead (the target of issue 19: the adaptive
one within 2x of the Bulkhead's, compiled), shared by
``benchmarks/test_bench_adaptive.py`` and ``ratefuse bench``.

Every loop takes and returns one slot per iteration, never refused: the
limit is far above one call in flight.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from itertools import repeat

from ratefuse.adaptive import AdaptiveLimiter
from ratefuse.bench.scenarios import Loop, Scenario, available_implementations
from ratefuse.bulkhead import Bulkhead
from ratefuse.core import implementation as _impl
from ratefuse.core.adaptive.config import Vegas

PERMIT_GROUP = "concurrency permit"
CONTEXT_GROUP = "concurrency with-block"


def _bulkhead_permits(bulkhead: Bulkhead, n: int) -> None:
    try_acquire, release = bulkhead.try_acquire, bulkhead.release
    for _ in repeat(None, n):
        try_acquire()
        release()


def _adaptive_permits(limiter: AdaptiveLimiter, n: int) -> None:
    try_acquire = limiter.try_acquire
    for _ in repeat(None, n):
        try_acquire().release()  # type: ignore[union-attr]


def _core_permits(implementation: _impl.Implementation, n: int) -> None:
    core_class = _impl.load("core.adaptive._limit", implementation).AdaptiveCore
    try_acquire = core_class(Vegas(initial_limit=1000).to_params()).try_acquire
    for _ in repeat(None, n):
        try_acquire().release()


def _with_blocks(guard: Bulkhead | AdaptiveLimiter, n: int) -> None:
    for _ in repeat(None, n):
        with guard:
            pass


def _bulkhead_loop() -> Loop:
    return partial(_bulkhead_permits, Bulkhead(1000))


def _adaptive_loop() -> Loop:
    return partial(_adaptive_permits, AdaptiveLimiter(Vegas(initial_limit=1000)))


def adaptive_scenarios(
    implementations: Iterable[_impl.Implementation] | None = None,
) -> list[Scenario]:
    """`adaptive_scenarios` is a permit and its release on a Bulkhead (its
    try_acquire and release), on an AdaptiveLimiter (its try_acquire and
    the permit's release, the process's implementation) and on each
    implementation's adaptive core; and a with-block on both."""
    chosen = _impl.IMPLEMENTATION
    scenarios = [
        Scenario(PERMIT_GROUP, "bulkhead", "-", _bulkhead_loop),
        Scenario(PERMIT_GROUP, "adaptive limiter", chosen, _adaptive_loop),
        Scenario(
            CONTEXT_GROUP,
            "bulkhead",
            "-",
            lambda: partial(_with_blocks, Bulkhead(1000)),
        ),
        Scenario(
            CONTEXT_GROUP,
            "adaptive limiter",
            chosen,
            lambda: partial(_with_blocks, AdaptiveLimiter(Vegas(initial_limit=1000))),
        ),
    ]
    for implementation in implementations or available_implementations():
        scenarios.append(
            Scenario(
                PERMIT_GROUP,
                "adaptive core",
                implementation,
                partial(partial, _core_permits, implementation),
            )
        )
    return scenarios
