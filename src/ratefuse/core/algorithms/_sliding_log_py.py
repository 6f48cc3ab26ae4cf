"""Sliding log, the reference core: exact, memory grows with the limit.

State: a ring of admitted ``(time, cost)`` entries, with its head index, entry
count and cost total. An entry counts while ``now < time + period``. Cost c is
admitted iff ``total + c <= limit``; zero-cost decisions are not logged. The
ring holds ``limit`` entries (every logged cost is at least 1), which is why
the limit is capped (``max_limit`` in its record, sliding_log.py). Entries
are stamped no earlier than the newest one, so the ring stays sorted even if
time steps back.
"""

from __future__ import annotations

from typing import Final

from ratefuse.core.algorithms._shared_py import admits_now, no_stamp
from ratefuse.core.spec import NEVER, LimitSpec
from ratefuse.core.step_result import StepResult

HEAD, COUNT, TOTAL, RING = 0, 1, 2, 3


def sliding_log_step(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, commit: bool
) -> StepResult:
    """`sliding_log_step` decides ``cost`` at ``now``; consumes only if ``commit``.

    Reports the state as left: see ``gcra_step``.
    """
    period, limit = spec.period_ns, spec.capacity
    head, count, total = state[base + HEAD], state[base + COUNT], state[base + TOTAL]
    ring = base + RING
    while count > 0 and state[ring + 2 * head] + period <= now:
        total -= state[ring + 2 * head + 1]
        head = (head + 1) % limit
        count -= 1
    newest = state[ring + 2 * ((head + count - 1) % limit)] if count > 0 else now
    if cost > limit:
        allowed, retry = False, NEVER
    elif total + cost <= limit:
        allowed, retry = True, 0
        if cost > 0 and commit:
            newest = newest if newest > now else now
            slot = ring + 2 * ((head + count) % limit)
            state[slot], state[slot + 1] = newest, cost
            count += 1
            total += cost
    else:
        allowed = False
        retry = _retry_after(state, ring, limit, head, total + cost - limit) + period
        retry -= now
    if commit:
        state[base + HEAD], state[base + COUNT] = head, count
        state[base + TOTAL] = total
    reset = newest + period - now if count > 0 else 0
    return StepResult(allowed, limit - total, retry, reset)


def _retry_after(
    state: list[int], ring: int, limit: int, head: int, excess: int
) -> int:
    """`_retry_after` is the stamp of the entry whose expiry frees ``excess``
    units. Precondition: the live entries hold at least ``excess``."""
    freed = 0
    while True:
        freed += state[ring + 2 * head + 1]
        if freed >= excess:
            return state[ring + 2 * head]
        head = (head + 1) % limit


# A window admits now or not at all; see admits_now.
sliding_log_reserve: Final = admits_now(sliding_log_step, no_stamp)


def sliding_log_idle_at(spec: LimitSpec, state: list[int], base: int) -> int:
    """`sliding_log_idle_at` is the first time at which the state is as if new."""
    count = state[base + COUNT]
    if count == 0:
        return 0
    newest_slot = (state[base + HEAD] + count - 1) % spec.capacity
    return state[base + RING + 2 * newest_slot] + spec.period_ns


def sliding_log_refund(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, stamp: int
) -> None:
    """`sliding_log_refund` gives nothing back: the log keeps the entry
    (removing one from the middle of the ring is not worth its cost)."""
