"""Sliding window counter (two weighted windows), the reference core.

State: the current window index k, the units admitted in window k (``cur``)
and in window k-1 (``prev``). At elapsed time e into window k the estimate is
``prev * (period - e) / period + cur``; cost c is admitted iff
``estimate + c <= limit``, compared multiplied through by ``period`` so the
arithmetic is exact. Rejected calls do not count.
"""

from __future__ import annotations

from typing import Final

from ratefuse.core.algorithms._shared_py import admits_now, current_window
from ratefuse.core.algorithms.sliding_window import retry_offset
from ratefuse.core.spec import NEVER, LimitSpec
from ratefuse.core.step_result import StepResult


def sliding_window_step(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, commit: bool
) -> StepResult:
    """`sliding_window_step` decides ``cost`` at ``now``; consumes only if ``commit``.

    Reports the state as left: see ``gcra_step``.
    """
    period, limit = spec.period_ns, spec.capacity
    window, cur, prev = state[base], state[base + 1], state[base + 2]
    if now // period > window:
        prev = cur if now // period == window + 1 else 0
        window, cur = now // period, 0
    start = window * period
    elapsed = now - start if now > start else 0
    weighted_prev = prev * (period - elapsed)
    if cost > limit:
        allowed, retry = False, NEVER
    elif weighted_prev + (cur + cost) * period <= limit * period:
        allowed, retry = True, 0
        if commit:
            cur += cost
    else:
        allowed = False
        retry = retry_offset(period, limit, cur, prev, cost) + start - now
    if commit:
        state[base], state[base + 1], state[base + 2] = window, cur, prev
    remaining = (limit * period - weighted_prev - cur * period) // period
    if cur > 0:
        reset = start + 2 * period - now
    elif prev > 0:
        reset = start + period - now
    else:
        reset = 0
    return StepResult(allowed, remaining if remaining > 0 else 0, retry, reset)


def sliding_window_idle_at(spec: LimitSpec, state: list[int], base: int) -> int:
    """`sliding_window_idle_at` is the first time at which the state is as if new."""
    if state[base + 1] > 0:
        return (state[base] + 2) * spec.period_ns
    return (state[base] + 1) * spec.period_ns if state[base + 2] > 0 else 0


def sliding_window_refund(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, stamp: int
) -> None:
    """`sliding_window_refund` gives the units back while they still weigh:
    from the current count in their window, from the previous one after."""
    window = now // spec.period_ns
    if window > state[base]:  # roll the windows forward first (no decision)
        cur = state[base + 1]
        state[base + 2] = cur if window == state[base] + 1 else 0
        state[base], state[base + 1] = window, 0
    if state[base] == stamp:
        state[base + 1] -= min(cost, state[base + 1])
    elif state[base] == stamp + 1:
        state[base + 2] -= min(cost, state[base + 2])


# A window admits now or not at all; see admits_now.
sliding_window_reserve: Final = admits_now(sliding_window_step, current_window)
