"""Waiting: one planner for every blocking verb, local or not.

An ``acquire`` starts from a :class:`~ratefuse.core.reservation.Reservation`
(the engines' ``reserve``; for a backend such as Redis, a decision seen as a
reservation with nothing to give back, see `decided`). If it needs no wait
the verb returns at once; otherwise :func:`plan` says what to do: sleep, and
after a denial attempt again. The blocking (`wait`) and asyncio
(`wait_async`) drivers only carry that out, so neither is a copy of the
other, and `retry` and `retry_async` are the same drivers for a backend
that decides instead of reserving.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import sys
import time
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Final, NamedTuple

from ratefuse.core.args import shown
from ratefuse.core.errors import RateLimitExceeded
from ratefuse.core.reservation import Reservation

if TYPE_CHECKING:
    from ratefuse.core.decision import Decision

# The bound on a wait that means "no bound", in ns (36 years): with now and
# tau bounded (see rates.MAX_TOLERANCE_NS) the cores stay inside int64.
UNBOUNDED_NS = 1 << 60

# The shortest sleep between two attempts of a backend, in seconds: a
# denial that reports retry_after 0 (a fallback policy's, or a fleet whose
# clocks disagree) must not turn acquire into a busy loop on Redis.
MIN_RETRY_S = 1e-4

Clock = Callable[[], int]
Sleep = Callable[[float], object]
AsyncSleep = Callable[[float], Awaitable[object]]
# `Again` reserves anew, at most ``within`` seconds ahead (None: no bound).
Again = Callable[[float | None], Reservation]
AgainAsync = Callable[[float | None], Reservation | Awaitable[Reservation]]


# The largest float: an int bound above it has no float value.
FLOAT_MAX: Final = sys.float_info.max


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
                f"{field} must be a number of seconds or None, got {shown(seconds)}"
            )
        if not seconds >= 0:  # negative or NaN
            raise ValueError(f"{field} must be >= 0 seconds, got {shown(seconds)}")
        if isinstance(seconds, int) and seconds > FLOAT_MAX:
            # Refused here, named, rather than as float()'s OverflowError
            # wherever the bound is used.
            raise ValueError(
                f"{field} must be at most {FLOAT_MAX:g} seconds, got {shown(seconds)}"
            )
        if seconds * 1e9 < bound:
            bound = math.ceil(seconds * 1e9)
    return bound


def acquire_timeout(timeout: float | None, max_wait: float | None) -> float | None:
    """`acquire_timeout` is the longest an acquire may wait: the tighter of
    its ``timeout`` and the limiter's ``max_wait`` (None: no bound)."""
    if timeout is None:
        return max_wait
    return timeout if max_wait is None else min(timeout, max_wait)


def check_wait(timeout: float | None, max_wait: float | None) -> float | None:
    """`check_wait` is `acquire_timeout` after checking both bounds: raises
    ValueError naming the field for a negative or NaN one."""
    wait_bound_ns(timeout, max_wait)
    return acquire_timeout(timeout, max_wait)


class Retry(NamedTuple):
    """`Retry` is a step of `plan`: attempt again, reserving at most
    ``within`` seconds ahead (None: no bound), and send the result."""

    within: float | None


# A step of `plan`: seconds to sleep, or an attempt to make.
Step = float | Retry


def plan(
    first: Reservation,
    clock_ns: Clock,
    timeout: float | None,
    min_sleep: float = 0.0,
    started: int | None = None,
) -> Generator[Step, Reservation | None, None]:
    """`plan` yields the steps of an acquire that ``first`` did not settle:
    sleeps (seconds) and, after a denial, a `Retry` whose reservation the
    driver sends back. It returns once the units are held, and cancels a
    held reservation if a sleep is interrupted (the driver throws the
    exception in). Raises RateLimitExceeded at once, without sleeping, when
    the wait would pass ``timeout`` (measured from ``started``, default
    now) or can never end. ``min_sleep`` floors the sleep after a denial."""
    began = clock_ns() if started is None else started
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
        elapsed = (clock_ns() - began) / 1e9
        if math.isinf(reservation.delay) or (
            timeout is not None and elapsed + reservation.delay > timeout
        ):
            raise RateLimitExceeded(reservation.decision)
        yield max(reservation.delay, min_sleep)
        within = (
            None if timeout is None else max(0.0, timeout - (clock_ns() - began) / 1e9)
        )
        sent = yield Retry(within)
        assert sent is not None, "plan: a Retry step is answered with a reservation"
        reservation = sent


def wait(
    first: Reservation,
    again: Again,
    clock_ns: Clock,
    timeout: float | None,
    sleep: Sleep | None,
    min_sleep: float = 0.0,
    started: int | None = None,
) -> None:
    """`wait` carries out `plan` with blocking sleeps (``time.sleep`` if
    None), reserving anew with ``again``."""
    sleeper = time.sleep if sleep is None else sleep
    steps = plan(first, clock_ns, timeout, min_sleep, started)
    answer: Reservation | None = None
    while True:
        try:
            step = steps.send(answer)
        except StopIteration:
            return
        if isinstance(step, Retry):
            answer = again(step.within)
            continue
        answer = None
        try:
            sleeper(step)
        except BaseException as exc:
            steps.throw(exc)  # lets plan cancel a held reservation
            raise


async def wait_async(
    first: Reservation,
    again: AgainAsync,
    clock_ns: Clock,
    timeout: float | None,
    sleep: AsyncSleep | None,
    min_sleep: float = 0.0,
    started: int | None = None,
) -> None:
    """`wait_async` is `wait` for asyncio: sleeps with ``asyncio.sleep`` (or
    ``sleep``) and awaits ``again`` when it returns an awaitable."""
    sleeper = asyncio.sleep if sleep is None else sleep
    steps = plan(first, clock_ns, timeout, min_sleep, started)
    answer: Reservation | None = None
    while True:
        try:
            step = steps.send(answer)
        except StopIteration:
            return
        if isinstance(step, Retry):
            attempt = again(step.within)
            answer = await attempt if inspect.isawaitable(attempt) else attempt
            continue
        answer = None
        try:
            await sleeper(step)
        except BaseException as exc:
            steps.throw(exc)  # lets plan cancel a held reservation
            raise


def decided(decision: Decision) -> Reservation:
    """`decided` is a backend's decision seen as a reservation: allowed, it
    holds the units with no wait; denied, it consumed nothing, so there is
    nothing to give back and asking again is safe."""
    delay = 0.0 if decision.allowed else decision.retry_after
    return Reservation(decision.allowed, delay, decision, None)


def retry(
    decide: Callable[[], Decision],
    timeout: float | None,
    clock: Clock | None,
    sleep: Sleep | None,
) -> None:
    """`retry` decides until allowed, sleeping each denial's retry_after (at
    least MIN_RETRY_S); raises RateLimitExceeded as `plan` does. ``clock``
    (None: ``time.monotonic_ns``) measures the wait from before the first
    decision."""
    clock_ns = time.monotonic_ns if clock is None else clock
    started = clock_ns()
    wait(
        decided(decide()),
        lambda _: decided(decide()),
        clock_ns,
        timeout,
        sleep,
        MIN_RETRY_S,
        started,
    )


async def retry_async(
    decide: Callable[[], Awaitable[Decision]],
    timeout: float | None,
    clock: Clock | None,
    sleep: AsyncSleep | None,
) -> None:
    """`retry_async` is `retry` for asyncio: ``decide`` is awaited."""
    clock_ns = time.monotonic_ns if clock is None else clock
    started = clock_ns()

    async def again(_: float | None) -> Reservation:
        return decided(await decide())

    first = decided(await decide())
    await wait_async(first, again, clock_ns, timeout, sleep, MIN_RETRY_S, started)
