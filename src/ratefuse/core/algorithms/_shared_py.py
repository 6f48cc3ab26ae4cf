"""What the reference cores share: the meters' remaining units, and the
windows' reservations, which admit now or not at all. Compiled twins: the
inline functions of ext/ratefuse/core/_step.pxd."""

from __future__ import annotations

from collections.abc import Callable

from ratefuse.core.algorithm import Reserve, Step
from ratefuse.core.spec import LimitSpec

Stamp = Callable[[LimitSpec, list[int], int, int], int]


def remaining_below(tau: int, backlog: int, interval: int) -> int:
    """`remaining_below` is how many units of ``interval`` ns fit between a
    meter's ``backlog`` and its tolerance ``tau``: none when the backlog
    exceeds tau (time stepped back, or a reservation queued past it)."""
    return (tau - backlog) // interval if backlog <= tau else 0


def current_window(spec: LimitSpec, state: list[int], base: int, now: int) -> int:
    """`current_window` is the index of the window a cost at ``now`` counts
    in (state[base] holds the stored one): the stored one if time stepped
    back."""
    window = now // spec.period_ns
    return window if window > state[base] else state[base]


def no_stamp(spec: LimitSpec, state: list[int], base: int, now: int) -> int:
    """`no_stamp` is the stamp of an algorithm whose refund needs none: 0."""
    return 0


def admits_now(step: Step, stamp: Stamp) -> Reserve:
    """`admits_now` is the reserve of a window algorithm decided by ``step``.

    A window cannot schedule ahead, so it admits now or not at all
    (``max_wait`` is unused); ``stamp`` identifies the reservation for a
    refund. It is read after the step, which is exact for `current_window`:
    a step moves the stored window index only to the one it counted in.
    """
    return lambda spec, state, base, now, cost, max_wait, commit: step(
        spec, state, base, now, cost, commit
    )._replace(stamp=stamp(spec, state, base, now))
