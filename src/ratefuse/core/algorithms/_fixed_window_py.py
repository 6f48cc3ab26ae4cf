"""Fixed window counter, the reference core.

State: the current window index k (windows are ``[k*period, (k+1)*period)``)
and the units admitted in it. Cost c is admitted iff ``count + c <= limit``;
rejected calls do not count. A time in an earlier window than the stored one
counts against the stored window (time never runs backwards for a state).
"""

from __future__ import annotations

from typing import Final

from ratefuse.core.algorithms._shared_py import admits_now, current_window
from ratefuse.core.spec import NEVER, LimitSpec
from ratefuse.core.step_result import StepResult


def fixed_window_step(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, commit: bool
) -> StepResult:
    """`fixed_window_step` decides ``cost`` at ``now``; consumes only if ``commit``.

    Reports the state as left: see ``gcra_step``.
    """
    period, limit = spec.period_ns, spec.capacity
    window, count = state[base], state[base + 1]
    if now // period > window:
        window, count = now // period, 0
    window_end = (window + 1) * period - now
    if cost > limit:
        allowed, retry = False, NEVER
    elif count + cost <= limit:
        allowed, retry = True, 0
        if commit:
            count += cost
    else:
        allowed, retry = False, window_end
    if commit:
        state[base], state[base + 1] = window, count
    return StepResult(allowed, limit - count, retry, window_end if count > 0 else 0)


# A window admits now or not at all; see admits_now.
fixed_window_reserve: Final = admits_now(fixed_window_step, current_window)


def fixed_window_idle_at(spec: LimitSpec, state: list[int], base: int) -> int:
    """`fixed_window_idle_at` is the first time at which the state is as if new."""
    return (state[base] + 1) * spec.period_ns if state[base + 1] > 0 else 0


def fixed_window_refund(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, stamp: int
) -> None:
    """`fixed_window_refund` gives the units back while their window lasts."""
    if now // spec.period_ns <= stamp == state[base]:
        state[base + 1] -= min(cost, state[base + 1])
