"""`WireLimit`: a limit in the wire form of the scripts, integer microseconds.

The cores take a limit as a :class:`ratefuse.core.spec.LimitSpec` in
nanoseconds; the scripts take it as four arguments in microseconds. Redis
runs Lua 5.1, whose numbers are doubles: integers are exact only below
2**53. `to_wire_limits` converts one limiter's specs and rejects, at
construction, any configuration whose arithmetic in the scripts could reach
that bound, with a ValueError naming the field and the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

from ratefuse.core.algorithms import REGISTRY
from ratefuse.core.spec import LimitSpec

# Scripts accept times up to 2**52 us (the year 2112; server TIME is about
# 2**50.6 today); every product below stays under 2**53 with that.
MAX_NOW_US: Final = 1 << 52
# Bound on tau (gcra), on period (windows) and on limit * period (sliding
# window): with now <= 2**52 every intermediate stays below 2**53.
MAX_SPAN_US: Final = 1 << 50
SCRIPT_ALGORITHMS: Final = REGISTRY.named(lambda algorithm: algorithm.script)


class WireLimit(NamedTuple):
    """`WireLimit` is one limit as a script sees it, in microseconds.

    ``field`` names the limit's fields in the subject's hash: it is the
    limit's numbers, so limiters that share a name share exactly the
    limits they have in common. ``interval_us`` is 0 for window algorithms.
    """

    field: str
    capacity: int
    period_us: int
    interval_us: int


def ceil_us(ns: int) -> int:
    """`ceil_us` is ``ns`` in whole microseconds, rounded up."""
    return -(-ns // 1000)


def to_wire_limit(spec: LimitSpec) -> WireLimit:
    """`to_wire_limit` lowers ``spec`` to microseconds, rounding periods and
    intervals up (never admitting more than the rate). Raises ValueError
    for an algorithm without a script, an emission interval below 1 us, or
    integers that could exceed 2**53 in the script."""
    if spec.algorithm not in SCRIPT_ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {', '.join(SCRIPT_ALGORITHMS)} for the "
            f"Redis backend, got {spec.algorithm!r}"
        )
    period_us = ceil_us(spec.period_ns)
    if spec.period_ns < 1000:
        raise ValueError(
            f"period must be at least 1 microsecond for Redis, got {spec.period_ns} ns"
        )
    if REGISTRY.by_name(spec.algorithm).burst:  # a meter: T and tau
        if spec.interval_ns < 1000:
            raise ValueError(
                "interval (period / limit) must be at least 1 microsecond for "
                f"Redis, got {spec.interval_ns} ns"
            )
        interval_us = ceil_us(spec.interval_ns)
        if interval_us * spec.capacity > MAX_SPAN_US:
            raise ValueError(
                "burst * period / limit must be at most 2**50 microseconds for "
                f"Redis (Lua numbers are doubles), got burst={spec.capacity} "
                f"with interval {interval_us} us"
            )
        return WireLimit(
            f"{spec.capacity}/{period_us}/{interval_us}",
            spec.capacity,
            period_us,
            interval_us,
        )
    if period_us > MAX_SPAN_US:
        raise ValueError(
            f"period must be at most 2**50 microseconds for Redis, got {period_us} us"
        )
    if spec.algorithm == "sliding_window" and spec.capacity * period_us > MAX_SPAN_US:
        raise ValueError(
            "limit * period must be at most 2**50 for sliding_window on Redis "
            f"(Lua numbers are doubles), got limit={spec.capacity} with "
            f"period {period_us} us"
        )
    return WireLimit(f"{spec.capacity}/{period_us}", spec.capacity, period_us, 0)


def to_wire_limits(specs: Sequence[LimitSpec]) -> tuple[WireLimit, ...]:
    """`to_wire_limits` lowers every spec of one limiter (all one algorithm)."""
    if not specs:
        raise ValueError("a limiter needs at least one limit, got none")
    algorithms = {spec.algorithm for spec in specs}
    if len(algorithms) != 1:
        raise ValueError(f"limits must share one algorithm, got {sorted(algorithms)}")
    return tuple(to_wire_limit(spec) for spec in specs)
