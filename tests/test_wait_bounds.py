"""Every wait is bounded and non-negative (issue 21, item 9, the local half).

The one planner (engine/waiting.py) drives local acquires and the Redis
retries; whatever a reservation or a backend's decision says, a sleep is
never negative, a bounded acquire never outlives its timeout, and a
backend that keeps answering "retry now" is not asked in a busy loop.
Nothing sleeps: the sleeps are recorded and move a manual clock (or not,
for a clock that stalls).
"""

from __future__ import annotations

import asyncio
import math

import pytest

from ratefuse import RateLimitExceeded
from ratefuse.core.decision import Decision
from ratefuse.core.reservation import Reservation
from ratefuse.engine import waiting
from ratefuse.rates import Rate, build_specs


class Clock:
    """`Clock` is integer ns moved by its sleeps (unless ``stalled``); it
    fails the test after ``most`` sleeps, so a loop that never ends fails
    instead of hanging."""

    def __init__(self, stalled: bool = False, most: int = 100_000) -> None:
        self.now_ns = 0
        self.sleeps: list[float] = []
        self.stalled = stalled
        self.most = most

    def __call__(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0, f"slept {seconds!r}"
        self.sleeps.append(seconds)
        assert len(self.sleeps) <= self.most, "the wait never ended"
        if not self.stalled:
            self.now_ns += math.ceil(seconds * 1e9)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def denied(retry_after: float) -> Decision:
    return Decision(False, 0, retry_after, 1.0, 1)


CORRUPT = [-5.0, -1e300, -math.inf, math.nan, 0.0, -0.0]


@pytest.mark.parametrize("retry_after", CORRUPT, ids=repr)
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_a_corrupt_retry_after_never_outlives_the_timeout(
    retry_after: float, asynchronous: bool
) -> None:
    clock = Clock()
    asked = []

    def decide() -> Decision:
        asked.append(clock.now_ns)
        return denied(retry_after)

    async def decide_async() -> Decision:
        return decide()

    def run() -> None:
        if asynchronous:
            coroutine = waiting.retry_async(decide_async, 2.0, clock, clock.async_sleep)
            asyncio.run(coroutine)
        else:
            waiting.retry(decide, 2.0, clock, clock.sleep)

    with pytest.raises(RateLimitExceeded):
        run()
    assert sum(clock.sleeps) <= 2.0
    assert all(s >= waiting.MIN_RETRY_S for s in clock.sleeps)
    # The floor grows while the backend says "now": not ~20,000 round trips.
    assert len(asked) < 2.0 / waiting.MAX_RETRY_S + 20


@pytest.mark.parametrize("retry_after", [-1.0, math.nan])
def test_a_held_reservation_with_a_corrupt_delay_sleeps_nothing(retry_after) -> None:
    clock = Clock()
    held = Reservation(True, retry_after, denied(0.0), None)
    waiting.wait(held, lambda _: held, clock, 1.0, clock.sleep)
    assert clock.sleeps == []


def test_a_held_reservation_beyond_the_timeout_is_given_back() -> None:
    clock = Clock()
    given_back = []
    held = Reservation(True, 5.0, denied(0.0), given_back.append)
    with pytest.raises(RateLimitExceeded):
        waiting.wait(held, lambda _: held, clock, 1.0, clock.sleep)
    assert given_back == [None]
    assert clock.sleeps == []


@pytest.mark.parametrize("timeout", [math.nan, -1.0, "1"])
def test_the_planner_refuses_a_bad_timeout(timeout) -> None:
    clock = Clock()
    with pytest.raises(ValueError, match="timeout"):
        waiting.retry(lambda: denied(0.1), timeout, clock, clock.sleep)
    assert clock.sleeps == []


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
@pytest.mark.parametrize("keyed", [False, True], ids=["single", "keyed"])
def test_a_stalled_clock_cannot_keep_a_local_acquire_waiting(
    impl, algorithm: str, keyed: bool
) -> None:
    # A clock that does not move while the acquire sleeps (a suspended VM, a
    # test clock): the sleeps themselves count against the timeout.
    clock = Clock(stalled=True, most=100)
    specs = build_specs([Rate(2, 1.0)], algorithm)
    options = {"sleep": clock.sleep, "async_sleep": clock.async_sleep}
    if keyed:
        core = impl.module("engine._keyed").KeyedLimiterCore(
            specs, 64, clock, **options
        )
        args: tuple[object, ...] = ("k",)
    else:
        core = impl.module("engine._subject").LimiterCore(specs, clock, **options)
        args = ()
    core.acquire(*args, 2)
    with pytest.raises(RateLimitExceeded):
        core.acquire(*args, 1, 3.0)
    assert 0 < sum(clock.sleeps) <= 3.0
    with pytest.raises(RateLimitExceeded):
        asyncio.run(core.acquire_async(*args, 1, 3.0))
    assert 0 < sum(clock.sleeps) <= 6.0


# ---- every way out of a wait gives the reservation back ----


class RaisingClock(Clock):
    """`RaisingClock` raises KeyboardInterrupt on its ``fail_at``-th read
    (as a signal handler's exception would, while the acquire holds a
    reservation)."""

    def __init__(self, fail_at: int) -> None:
        super().__init__()
        self.reads = 0
        self.fail_at = fail_at

    def __call__(self) -> int:
        self.reads += 1
        if self.reads == self.fail_at:
            raise KeyboardInterrupt
        return self.now_ns


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("keyed", [False, True], ids=["single", "keyed"])
def test_a_clock_raising_mid_wait_gives_the_reservation_back(
    impl, keyed: bool, asynchronous: bool
) -> None:
    specs = build_specs([Rate(10, 1.0, 1)], "gcra")  # T = 100 ms, burst 1
    clock = RaisingClock(fail_at=0)
    options = {"sleep": clock.sleep, "async_sleep": clock.async_sleep}
    if keyed:
        core = impl.module("engine._keyed").KeyedLimiterCore(
            specs, 64, clock, **options
        )
        args: tuple[object, ...] = ("k",)
    else:
        core = impl.module("engine._subject").LimiterCore(specs, clock, **options)
        args = ()
    core.acquire(*args)  # the next slot is 100 ms away
    # The read after the one that reserved: the planner's start.
    clock.reads, clock.fail_at = 0, 2

    def run() -> None:
        if asynchronous:
            asyncio.run(core.acquire_async(*args))
        else:
            core.acquire(*args)

    with pytest.raises(KeyboardInterrupt):
        run()
    assert clock.sleeps == []
    probe = core.reserve(*args, 1, None, clock.now_ns)
    assert probe.delay == pytest.approx(0.1)  # its slot is free again, not 0.2
