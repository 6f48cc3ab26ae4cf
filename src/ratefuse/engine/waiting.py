"""Reservations and waiting, shared by every engine (compiled or not).

The engines' ``reserve`` builds a :class:`Reservation`; ``acquire`` and
``acquire_async`` return at once when the reservation needs no wait, and
otherwise hand it to :func:`plan`, one generator of the sleeps to take that
both the blocking and the asyncio forms drive, so neither is a copy of the
other.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING

from ratefuse.core.errors import RateLimitExceeded

if TYPE_CHECKING:
    from ratefuse.engine.subject import Decision

# The bound on a wait that means "no bound", in ns (36 years): with now and
# tau bounded (see rates.MAX_TOLERANCE_NS) the cores stay inside int64.
UNBOUNDED_NS = 1 << 60


def wait_bound_ns(
    timeout: float | None, max_wait: float | None, name: str = "timeout"
) -> int:
    """`wait_bound_ns` is the tighter of ``timeout`` (called ``name`` in
    errors) and the limiter's ``max_wait`` in ns (None: no bound). Raises
    ValueError naming the field for a negative or NaN bound."""
    bound = UNBOUNDED_NS
    for field, seconds in ((name, timeout), ("max_wait", max_wait)):
        if seconds is None:
            continue
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError(
                f"{field} must be a number of seconds or None, got {seconds!r}"
            )
        if math.isnan(seconds) or seconds < 0:
            raise ValueError(f"{field} must be >= 0 seconds, got {seconds!r}")
        if seconds * 1e9 < bound:
            bound = math.ceil(seconds * 1e9)
    return bound


def acquire_timeout(timeout: float | None, max_wait: float | None) -> float | None:
    """`acquire_timeout` is the longest an acquire may wait: the tighter of
    its ``timeout`` and the limiter's ``max_wait`` (None: no bound)."""
    if timeout is None:
        return max_wait
    return timeout if max_wait is None else min(timeout, max_wait)


class Reservation:
    """`Reservation` is ``cost`` units set aside by ``reserve``.

    ``ok``: the units are reserved; use them after ``delay`` seconds.
    Otherwise nothing was taken and ``delay`` is how long the units would
    have needed (``inf``: they never can be admitted). ``decision`` is the
    decision behind it. `cancel` gives back what is left (exactly for gcra;
    see each algorithm's refund). Thread-safe; cancel is idempotent.
    """

    __slots__ = ("_refund", "decision", "delay", "ok")

    def __init__(
        self,
        ok: bool,
        delay: float,
        decision: Decision,
        refund: Callable[[int | None], None] | None,
    ) -> None:
        self.ok = ok
        self.delay = delay
        self.decision = decision
        self._refund = refund if ok else None

    def cancel(self, now: int | None = None) -> None:
        """`cancel` gives the reserved units back (no-op if not ``ok`` or
        already cancelled); ``now`` is in ns on the limiter's clock."""
        refund, self._refund = self._refund, None
        if refund is not None:
            refund(now)

    def __repr__(self) -> str:
        return f"Reservation(ok={self.ok}, delay={self.delay!r})"


Again = Callable[[float | None], Reservation]


def plan(
    first: Reservation,
    again: Again,
    clock_ns: Callable[[], int],
    timeout: float | None,
) -> Generator[float, None, None]:
    """`plan` yields the sleeps (seconds) an acquire takes, and returns once
    the units are held. ``again(max_wait)`` reserves anew (after a window
    algorithm's denial). Raises RateLimitExceeded at once, without waiting,
    when the wait would pass ``timeout`` or can never end."""
    started = clock_ns()
    reservation = first
    while True:
        if reservation.ok:
            if reservation.delay > 0:
                try:
                    yield reservation.delay
                except BaseException:
                    reservation.cancel()  # interrupted: give the slot back
                    raise
            return
        elapsed = (clock_ns() - started) / 1e9
        if math.isinf(reservation.delay) or (
            timeout is not None and elapsed + reservation.delay > timeout
        ):
            raise RateLimitExceeded(reservation.decision)
        yield reservation.delay
        left = (
            None
            if timeout is None
            else max(0.0, timeout - (clock_ns() - started) / 1e9)
        )
        reservation = again(left)


def wait(
    first: Reservation,
    again: Again,
    clock_ns: Callable[[], int],
    timeout: float | None,
    sleep: Callable[[float], object] | None,
) -> None:
    """`wait` drives `plan` with blocking sleeps (``time.sleep`` if None)."""
    sleeper = time.sleep if sleep is None else sleep
    steps = plan(first, again, clock_ns, timeout)
    for seconds in steps:
        try:
            sleeper(seconds)
        except BaseException as exc:
            steps.throw(exc)  # lets plan cancel a held reservation
            raise


async def wait_async(
    first: Reservation,
    again: Again,
    clock_ns: Callable[[], int],
    timeout: float | None,
    sleep: Callable[[float], Awaitable[object]] | None,
) -> None:
    """`wait_async` drives `plan` with ``asyncio.sleep`` (or ``sleep``)."""
    sleeper = asyncio.sleep if sleep is None else sleep
    steps = plan(first, again, clock_ns, timeout)
    for seconds in steps:
        try:
            await sleeper(seconds)
        except BaseException as exc:
            steps.throw(exc)  # lets plan cancel a held reservation
            raise
