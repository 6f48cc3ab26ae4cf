"""Validation of per-call arguments, shared by the reference engines; the
compiled engines raise the same errors (``ext/ratefuse/_args.pxd``)."""

from __future__ import annotations

import operator

from ._spec import MAX_COST, MAX_NOW_NS


def check_cost(cost: int) -> int:
    """`check_cost` returns ``cost`` as an int in [0, 2**63) or raises.

    Floats are refused, not truncated; outside int64 is OverflowError, as
    in the compiled engine.
    """
    cost = operator.index(cost)
    if not -MAX_COST - 1 <= cost <= MAX_COST:
        raise OverflowError(f"cost must be in [0, 2**63), got {cost}")
    if cost < 0:
        raise ValueError(f"cost must be >= 0, got {cost}")
    return cost


def check_now(now: int) -> int:
    """`check_now` returns ``now`` as an int in [0, 2**62] or raises."""
    now = operator.index(now)
    if not 0 <= now <= MAX_NOW_NS:
        raise ValueError(f"now must be in [0, 2**62] nanoseconds, got {now}")
    return now
