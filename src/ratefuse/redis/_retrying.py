"""Blocking on a Redis-backed limiter: `acquire` and `acquire_async` decide
in Redis, sleep the retry_after the fleet reported, and decide again.

One generator (`retries`) holds the policy, the blocking and the asyncio
drivers only sleep; a denied decision consumed nothing, so asking again is
safe (unlike resending a consuming command whose outcome is unknown).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Generator

from ratefuse.core.errors import RateLimitExceeded
from ratefuse.engine.subject import Decision
from ratefuse.engine.waiting import acquire_timeout, wait_bound_ns

# The shortest sleep between two attempts, in seconds: a denial that
# reports retry_after 0 (a fallback policy's, or a fleet whose clocks
# disagree) must not turn acquire into a busy loop on Redis.
MIN_RETRY_S = 1e-4

Clock = Callable[[], int]


def check_wait(timeout: float | None, max_wait: float | None) -> float | None:
    """`check_wait` is the longest an acquire may wait (the tighter of
    ``timeout`` and ``max_wait``; None: no bound); raises ValueError naming
    the field for a negative or NaN bound."""
    wait_bound_ns(timeout, max_wait)
    return acquire_timeout(timeout, max_wait)


def retries(timeout: float | None, clock: Clock) -> Generator[float, Decision, None]:
    """`retries` is sent each attempt's Decision and yields the seconds to
    sleep before the next one; it returns once a decision is allowed.
    Raises RateLimitExceeded, at once and without sleeping, when the wait
    could never end (retry_after inf) or would pass ``timeout``."""
    started = clock()
    decision = yield 0.0  # primed: the first attempt needs no sleep
    while not decision.allowed:
        wait = decision.retry_after
        elapsed = (clock() - started) / 1e9
        if math.isinf(wait) or (timeout is not None and elapsed + wait > timeout):
            raise RateLimitExceeded(decision)
        decision = yield max(wait, MIN_RETRY_S)


def block(
    decide: Callable[[], Decision],
    timeout: float | None,
    clock: Clock | None,
    sleep: Callable[[float], object] | None,
) -> None:
    """`block` drives `retries` with blocking sleeps (``time.sleep`` if
    None) and ``clock`` (``time.monotonic_ns`` if None)."""
    steps = retries(timeout, time.monotonic_ns if clock is None else clock)
    sleeper = time.sleep if sleep is None else sleep
    next(steps)
    while True:
        try:
            seconds = steps.send(decide())
        except StopIteration:
            return
        sleeper(seconds)


async def block_async(
    decide: Callable[[], Awaitable[Decision]],
    timeout: float | None,
    clock: Clock | None,
    sleep: Callable[[float], Awaitable[object]] | None,
) -> None:
    """`block_async` is `block` for asyncio: ``decide`` is awaited and the
    sleeps are ``asyncio.sleep`` (or ``sleep``)."""
    steps = retries(timeout, time.monotonic_ns if clock is None else clock)
    sleeper = asyncio.sleep if sleep is None else sleep
    next(steps)
    while True:
        try:
            seconds = steps.send(await decide())
        except StopIteration:
            return
        await sleeper(seconds)
