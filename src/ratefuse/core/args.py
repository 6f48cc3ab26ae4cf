"""Validation of per-call arguments (cost, now), shared by the reference
engines and the backends; the compiled engines inline the same checks and
raise the same errors (``ext/ratefuse/core/_args.pxd``). Not a twin: no
decision is made here, so there is one Python implementation."""

from __future__ import annotations

import operator
import time
from collections.abc import Callable

from ratefuse.core.spec import MAX_COST, MAX_NOW_NS


def check_cost(cost: int) -> int:
    """`check_cost` returns ``cost`` as an int in [0, 2**63) or raises
    ValueError naming it; floats are refused, not truncated."""
    try:
        cost = operator.index(cost)
    except TypeError:
        raise ValueError(f"cost must be an int, got {cost!r}") from None
    if cost < 0:
        raise ValueError(f"cost must be >= 0, got {cost}")
    if cost > MAX_COST:
        raise ValueError(f"cost must be in [0, 2**63), got {cost}")
    return cost


def check_now(now: int) -> int:
    """`check_now` returns ``now`` as an int in [0, 2**62] or raises."""
    try:
        now = operator.index(now)
    except TypeError:
        raise ValueError(f"now must be an int (nanoseconds), got {now!r}") from None
    if not 0 <= now <= MAX_NOW_NS:
        raise ValueError(f"now must be in [0, 2**62] nanoseconds, got {now}")
    return now


def resolve_now(clock: Callable[[], int] | None, now: int | None) -> int:
    """`resolve_now` is the time of a decision: ``now`` if given, else
    ``clock()`` (None: the monotonic clock), checked as `check_now`."""
    if now is not None:
        return check_now(now)
    if clock is None:
        return time.monotonic_ns()
    return check_now(clock())
