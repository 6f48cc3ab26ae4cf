"""Leaky bucket as a meter, the reference core.

State: the water ``level`` (in nanoseconds of drain time) and the time it was
last drained. Each unit pours T nanoseconds of water; the bucket drains one
per nanosecond and holds tau = T * capacity. Cost c is admitted iff
``level + c*T <= tau`` after draining. For non-decreasing time this makes the
same decisions as GCRA (ITU-T I.371's continuous-state leaky bucket); a time
earlier than the last drain drains nothing.
"""

from __future__ import annotations

from ratefuse.core.algorithms._shared_py import remaining_below
from ratefuse.core.spec import NEVER, LimitSpec
from ratefuse.core.step_result import StepResult


def leaky_bucket_step(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, commit: bool
) -> StepResult:
    """`leaky_bucket_step` decides ``cost`` at ``now``; consumes only if ``commit``.

    Reports the state as left: see ``gcra_step``.
    """
    interval = spec.interval_ns
    tau = interval * spec.capacity
    level, last = _drained(state, base, now)
    if cost > spec.capacity:
        allowed, retry = False, NEVER
    else:
        poured = level + cost * interval
        allowed = poured <= tau
        retry = 0 if allowed else poured - tau
        if allowed and commit:
            level = poured
    if commit:
        state[base], state[base + 1] = level, last
    return StepResult(allowed, remaining_below(tau, level, interval), retry, level)


def leaky_bucket_idle_at(spec: LimitSpec, state: list[int], base: int) -> int:
    """`leaky_bucket_idle_at` is the first time at which the state is as if new."""
    return state[base + 1] + state[base]


def leaky_bucket_reserve(
    spec: LimitSpec,
    state: list[int],
    base: int,
    now: int,
    cost: int,
    max_wait: int,
    commit: bool,
) -> StepResult:
    """`leaky_bucket_reserve` queues ``cost`` if its turn is at most
    ``max_wait`` ns away: the level may rise above tau by that much, so
    callers are spaced T apart. ``stamp`` is when the queue empties."""
    interval = spec.interval_ns
    tau = interval * spec.capacity
    level, last = _drained(state, base, now)
    allowed, delay, stamp = False, NEVER, 0
    if cost <= spec.capacity:
        poured = level + cost * interval
        delay = poured - tau if poured > tau else 0
        allowed, stamp = delay <= max_wait, last + poured
        if allowed:
            level = poured
    if commit:
        state[base], state[base + 1] = level, last
    remaining = remaining_below(tau, level, interval)
    return StepResult(allowed, remaining, delay, level, stamp)


def leaky_bucket_refund(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, stamp: int
) -> None:
    """`leaky_bucket_refund` drains back the part of a reservation that has
    not flowed out by ``now`` (it filled [stamp - cost*T, stamp))."""
    level, last = _drained(state, base, now)
    refund = min(cost * spec.interval_ns, stamp - now, level)
    if refund > 0:
        state[base], state[base + 1] = level - refund, last


def _drained(state: list[int], base: int, now: int) -> tuple[int, int]:
    """`_drained` is the (level, last drain time) at ``now``: a time earlier
    than the last drain drains nothing."""
    level, last = state[base], state[base + 1]
    if now > last:
        return (level - (now - last) if level > now - last else 0), now
    return level, last
