"""GCRA (generic cell rate algorithm), the reference core.

State: one integer, the theoretical arrival time ``tat``. With emission
interval T and tolerance tau = T * capacity, cost c is admitted at ``now`` iff
``max(tat, now) + c*T - now <= tau``; then ``tat = max(tat, now) + c*T``.
This is a token bucket of ``capacity`` tokens refilled one per T, decision for
decision. A zero state (tat = 0) is "as if new" for every now >= 0.
"""

from __future__ import annotations

from ratefuse.core.algorithms._shared_py import remaining_below
from ratefuse.core.spec import NEVER, LimitSpec
from ratefuse.core.step_result import StepResult


def gcra_step(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, commit: bool
) -> StepResult:
    """`gcra_step` decides ``cost`` at ``now``; consumes it only if ``commit``.

    ``remaining`` and ``reset_after_ns`` describe the state as left by the
    step: without ``commit`` the state as it was, so that a compound limit
    can report the components it did not consume from.
    """
    interval = spec.interval_ns
    tau = interval * spec.capacity
    tat = state[base]
    start = tat if tat > now else now
    if cost > spec.capacity:
        allowed, retry = False, NEVER
    else:
        new_tat = start + cost * interval
        allowed = new_tat - now <= tau
        if allowed:
            retry = 0
            if commit:
                start = state[base] = new_tat
        else:
            retry = new_tat - tau - now
    backlog = start - now
    return StepResult(allowed, remaining_below(tau, backlog, interval), retry, backlog)


def gcra_idle_at(spec: LimitSpec, state: list[int], base: int) -> int:
    """`gcra_idle_at` is the first time at which the state is as if new."""
    return state[base]


def gcra_reserve(
    spec: LimitSpec,
    state: list[int],
    base: int,
    now: int,
    cost: int,
    max_wait: int,
    commit: bool,
) -> StepResult:
    """`gcra_reserve` schedules ``cost`` at the earliest slot, if that slot is
    at most ``max_wait`` ns away: ``retry_after_ns`` is the delay, ``stamp``
    the tat the reservation left (its end in virtual time)."""
    interval = spec.interval_ns
    tau = interval * spec.capacity
    tat = state[base]
    start = tat if tat > now else now
    if cost > spec.capacity:
        backlog = start - now
        return StepResult(
            False, remaining_below(tau, backlog, interval), NEVER, backlog
        )
    new_tat = start + cost * interval
    delay = new_tat - tau - now if new_tat - tau > now else 0
    allowed = delay <= max_wait
    if allowed and commit:
        state[base] = new_tat
    end = new_tat if allowed else start
    remaining = remaining_below(tau, end - now, interval)
    return StepResult(allowed, remaining, delay, end - now, new_tat)


def gcra_refund(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, stamp: int
) -> None:
    """`gcra_refund` gives back the part of a reservation still ahead of
    ``now``: it occupied virtual time [stamp - cost*T, stamp)."""
    refund = min(cost * spec.interval_ns, stamp - now)
    if refund > 0:
        state[base] -= refund
