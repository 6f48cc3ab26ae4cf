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
from ratefuse.core.errors import DeadlineExceeded, RatefuseError, RateLimitExceeded
from ratefuse.core.reservation import Reservation
from ratefuse.engine.deadline import current

if TYPE_CHECKING:
    from ratefuse.core.decision import Decision

# The bound on a wait that means "no bound", in ns (36 years): with now and
# tau bounded (see rates.MAX_TOLERANCE_NS) the cores stay inside int64.
UNBOUNDED_NS = 1 << 60

# The shortest sleep between two attempts of a backend, in seconds: a
# denial that reports retry_after 0 (a fallback policy's, or a fleet whose
# clocks disagree) must not turn acquire into a busy loop on Redis.
MIN_RETRY_S = 1e-4

# The longest that floor grows to while a backend keeps denying with a wait
# below it (see `plan`), in seconds.
MAX_RETRY_S = 0.01

# The shortest sleep after any denial, in seconds: a core's denial always
# reports a wait, but a wait of 0 must not make a busy loop either.
MIN_DENIED_SLEEP_S = 1e-6

# How far a held reservation's delay may pass the time left: the cores
# round the bound up to the nanosecond, and seconds are floats.
DELAY_ROUNDING_S = 1e-6

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
    now) or can never end; DeadlineExceeded (caused by that
    RateLimitExceeded) when the wait would fit ``timeout`` but not the
    running call's deadline (`ratefuse.engine.deadline`, read once when the
    plan starts: the deadline is the one place the time left is checked);
    ValueError for a negative or NaN ``timeout``.

    Every wait is bounded and non-negative whatever the reservations say:
    a delay that is negative or NaN (a corrupt backend reply) counts as 0;
    a held reservation whose delay does not fit the time left is given
    back and the acquire fails; and the time spent is the longer of the
    clock's and the sum of the sleeps, so a clock that stalls cannot keep a
    bounded acquire looping. ``min_sleep`` floors the sleep after a denial;
    while denials report less than that floor (a backend answering 0 or a
    negative wait) it doubles, up to `MAX_RETRY_S`, so that no retry loop
    spins on a backend.
    """
    limit = allowed = check_wait(timeout, None)
    began = clock_ns() if started is None else started
    # The deadline check: one read of a ContextVar and, with a deadline
    # set, the time left on its clock (Budget.remaining, inline). When the
    # deadline runs on the planner's own clock (the default monotonic one
    # for both) the reading just taken serves, so the check reads no clock.
    left = None
    running = current()
    if running is not None:
        now = began if started is None and running.clock is clock_ns else None
        left = (running.at_ns - (running.clock() if now is None else now)) / 1e9
        if left < 0.0:
            left = 0.0
        if limit is None or left < limit:
            limit = left  # the deadline is the tighter bound
    slept = 0.0
    floor = max(min_sleep, MIN_DENIED_SLEEP_S)
    # The time left when the current reservation was taken: the furthest
    # ahead it may be (the cores round it up to the nanosecond).
    budget = limit
    reservation = first
    while True:
        delay = _valid_delay(reservation.delay)
        if reservation.ok:
            if math.isinf(delay) or (
                budget is not None and delay > budget + DELAY_ROUNDING_S
            ):
                reservation.cancel()  # it cannot be used in time: give it back
                refused = RateLimitExceeded(reservation.decision)
                spent = max((clock_ns() - began) / 1e9, slept)
                raise _refusal(refused, delay, spent + delay, allowed, left)
            if delay > 0:
                try:
                    yield delay
                except BaseException:
                    reservation.cancel()  # interrupted: give the slot back
                    raise
            return
        pause = max(delay, floor)
        elapsed = max((clock_ns() - began) / 1e9, slept)
        if math.isinf(delay) or (limit is not None and elapsed + pause > limit):
            refused = RateLimitExceeded(reservation.decision)
            raise _refusal(refused, pause, elapsed + pause, allowed, left)
        yield pause
        slept = elapsed + pause
        if delay < floor and min_sleep > 0:
            floor = min(floor * 2, max(MAX_RETRY_S, min_sleep))
        else:
            floor = max(min_sleep, MIN_DENIED_SLEEP_S)
        elapsed = max((clock_ns() - began) / 1e9, slept)
        budget = None if limit is None else max(0.0, limit - elapsed)
        sent = yield Retry(budget)
        assert sent is not None, "plan: a Retry step is answered with a reservation"
        reservation = sent


def _refusal(
    refused: RateLimitExceeded,
    needed: float,
    total: float,
    allowed: float | None,
    left: float | None,
) -> RatefuseError:
    """`_refusal` is the error of a wait of ``needed`` seconds (``total``
    from the start) that cannot fit: DeadlineExceeded if it fits the
    ``allowed`` timeout but not the deadline's ``left`` seconds, else
    ``refused``."""
    if left is None or math.isinf(needed):
        return refused
    if allowed is not None and total > allowed + DELAY_ROUNDING_S:
        return refused
    error = DeadlineExceeded("acquire", needed, left, needed)
    error.__cause__ = refused
    return error


def _valid_delay(delay: float) -> float:
    """`_valid_delay` is ``delay`` with what no wait can be (negative, NaN,
    not a number) taken as 0; ``inf`` (never) stays."""
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        return 0.0
    return float(delay) if delay > 0 else 0.0  # NaN > 0 is false


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
    None), reserving anew with ``again``. On any exception it gives back
    the reservation it holds."""
    sleeper = time.sleep if sleep is None else sleep
    held = first
    try:
        steps = plan(first, clock_ns, timeout, min_sleep, started)
        answer: Reservation | None = None
        while True:
            try:
                step = steps.send(answer)
            except StopIteration:
                return
            if isinstance(step, Retry):
                answer = held = again(step.within)
                continue
            answer = None
            try:
                sleeper(step)
            except BaseException as exc:
                steps.throw(exc)  # lets plan cancel a held reservation
                raise
    except BaseException:
        # Whatever the way out (the clock raising, a signal's exception),
        # the reservation in hand goes back; a denial holds nothing.
        held.cancel()
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
    held = first
    try:
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
                held = answer
                continue
            answer = None
            try:
                await sleeper(step)
            except BaseException as exc:
                steps.throw(exc)  # lets plan cancel a held reservation
                raise
    except BaseException:
        held.cancel()  # as in `wait`
        raise


async def acquire_when_awaited(
    reserve: Callable[[], Reservation],
    again: AgainAsync,
    clock_ns: Clock,
    timeout: float | None,
    sleep: AsyncSleep | None,
) -> None:
    """`acquire_when_awaited` is an asyncio acquire that takes its first
    reservation (``reserve``) when awaited, not when called: a coroutine
    never awaited, a task cancelled before it runs, or ``wait_for(..., 0)``
    takes nothing, so it has nothing to leak. Then as `wait_async`."""
    first = reserve()
    if first.ok and first.delay == 0:
        return  # admitted now: nothing to plan
    await wait_async(first, again, clock_ns, timeout, sleep)


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
