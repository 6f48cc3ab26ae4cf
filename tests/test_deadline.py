"""Deadlines: the budget in a ContextVar, and every local wait bounded by it.

The limiters run on both implementations with a manual clock that only
sleeps move, and the deadline is measured on the same clock, so nothing
here sleeps; the bulkhead's queue is a real lock or future, waited on for
a few milliseconds at most.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import threading

import pytest

import ratefuse
from ratefuse import (
    Bulkhead,
    BulkheadFullError,
    DeadlineExceeded,
    Limiter,
    Rate,
    RateLimitExceeded,
)
from ratefuse.engine import waiting
from ratefuse.engine.deadline import Budget, bounded, current
from ratefuse.engine.subject import Decision

S = 1_000_000_000
EVERY_100_MS = Rate(10, 1.0, 1)  # one unit every 100 ms, burst 1
ONE_PER_100_MS = Rate(1, 0.1)  # a window algorithm's


class ManualClock:
    """`ManualClock` is integer ns that the test and ``sleep`` move."""

    def __init__(self) -> None:
        self.now_ns = 10 * S
        self.sleeps: list[float] = []

    def __call__(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now_ns += round(seconds * 1e9)

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)
        await asyncio.sleep(0)


def limiter(impl, clock: ManualClock, algorithm: str = "gcra") -> Limiter:
    core = impl.module("engine._subject").LimiterCore
    cls = type("Limiter", (core,), {})
    from ratefuse.rates import build_specs

    return cls(
        build_specs(
            [EVERY_100_MS if algorithm == "gcra" else ONE_PER_100_MS], algorithm
        ),
        clock,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
    )


# ---- the budget ----


def test_no_deadline_is_none() -> None:
    assert ratefuse.remaining() is None
    assert current() is None
    assert bounded(1.5) == (1.5, False)


def test_deadline_sets_and_restores_the_budget() -> None:
    clock = ManualClock()
    with ratefuse.deadline(2.0, clock=clock) as budget:
        assert ratefuse.remaining() == 2.0
        clock.now_ns += S // 2
        assert ratefuse.remaining() == 1.5
        assert budget.remaining() == 1.5
        assert bounded(None) == (1.5, True)
        assert bounded(1.0) == (1.0, False)
        clock.now_ns += 5 * S
        assert ratefuse.remaining() == 0.0
    assert ratefuse.remaining() is None


def test_nested_deadlines_keep_the_earlier_one() -> None:
    clock = ManualClock()
    with ratefuse.deadline(1.0, clock=clock):
        with ratefuse.deadline(5.0, clock=clock):
            assert ratefuse.remaining() == 1.0  # cannot extend
        with ratefuse.deadline(0.25, clock=clock):
            assert ratefuse.remaining() == 0.25
        assert ratefuse.remaining() == 1.0


def test_one_deadline_object_is_reentrant() -> None:
    clock = ManualClock()
    budget = ratefuse.Deadline(1.0, clock=clock)
    with budget:
        clock.now_ns += S // 2
        with budget:
            assert ratefuse.remaining() == 0.5  # the outer one ends sooner
        assert ratefuse.remaining() == 0.5
    assert ratefuse.remaining() is None


@pytest.mark.parametrize("seconds", [-1.0, math.nan, math.inf, "1", True, None])
def test_a_bad_budget_is_refused_naming_the_field(seconds: object) -> None:
    with pytest.raises(ValueError, match="seconds"):
        ratefuse.deadline(seconds)  # type: ignore[arg-type]


def test_the_budget_flows_into_tasks_and_copied_contexts() -> None:
    clock = ManualClock()
    seen: list[object] = []

    async def child() -> None:
        seen.append(ratefuse.remaining())

    async def main() -> None:
        async with ratefuse.deadline(3.0, clock=clock):
            await asyncio.create_task(child())
            context = contextvars.copy_context()
        await asyncio.create_task(child())  # created outside: no deadline
        thread = threading.Thread(
            target=context.run, args=(lambda: seen.append(current()),)
        )
        thread.start()
        thread.join()

    asyncio.run(main())
    assert seen[:2] == [3.0, None]
    budget = seen[2]
    assert isinstance(budget, Budget)
    assert budget.remaining() == 3.0


# ---- acquire and acquire_async ----


@pytest.mark.parametrize("algorithm", ["gcra", "fixed_window"])
def test_acquire_refuses_at_once_a_wait_that_cannot_fit(impl, algorithm) -> None:
    clock = ManualClock()
    core = limiter(impl, clock, algorithm)
    core.acquire()
    with (
        ratefuse.deadline(0.05, clock=clock),
        pytest.raises(DeadlineExceeded) as refused,
    ):
        core.acquire()
    assert clock.sleeps == []
    error = refused.value
    assert isinstance(error, TimeoutError)
    assert isinstance(error.__cause__, RateLimitExceeded)
    assert error.what == "acquire"
    assert error.remaining == 0.05
    assert error.needed == pytest.approx(0.1, abs=1e-6)
    assert error.retry_after == error.needed
    # Nothing was kept: without a deadline the next unit is 100 ms away.
    core.acquire()
    assert clock.sleeps == [pytest.approx(0.1, abs=1e-6)]


@pytest.mark.parametrize("algorithm", ["gcra", "fixed_window"])
def test_acquire_waits_when_the_wait_fits_the_deadline(impl, algorithm) -> None:
    clock = ManualClock()
    core = limiter(impl, clock, algorithm)
    core.acquire()
    with ratefuse.deadline(0.5, clock=clock):
        core.acquire()
    assert sum(clock.sleeps) == pytest.approx(0.1, abs=1e-5)


def test_a_tighter_timeout_still_raises_rate_limit_exceeded(impl) -> None:
    clock = ManualClock()
    core = limiter(impl, clock)
    core.acquire()
    with (
        ratefuse.deadline(0.05, clock=clock),
        pytest.raises(RateLimitExceeded) as refused,
    ):
        core.acquire(timeout=0.01)
    assert not isinstance(refused.value, DeadlineExceeded)


def test_a_spent_deadline_still_admits_what_needs_no_wait(impl) -> None:
    clock = ManualClock()
    core = limiter(impl, clock)
    with ratefuse.deadline(0.0, clock=clock):
        core.acquire()  # no wait: nothing to bound
        with pytest.raises(DeadlineExceeded):
            core.acquire()


def test_acquire_async_is_bounded_by_the_deadline(impl) -> None:
    clock = ManualClock()
    core = limiter(impl, clock)

    async def main() -> None:
        await core.acquire_async()
        async with ratefuse.deadline(0.05, clock=clock):
            with pytest.raises(DeadlineExceeded):
                await core.acquire_async()
        async with ratefuse.deadline(1.0, clock=clock):
            await core.acquire_async()

    asyncio.run(main())
    assert clock.sleeps == [pytest.approx(0.1, abs=1e-6)]


def test_the_retry_planner_of_a_backend_is_bounded_by_the_deadline() -> None:
    # waiting.retry is what Redis-backed limiters drive with the fleet's
    # retry_after: a denial of 0.3 s cannot fit 0.25 s left after a retry.
    clock = ManualClock()
    answers = iter([0.2, 0.3])

    def decide() -> Decision:
        return Decision(False, 0, next(answers), 1.0, 1)

    with (
        ratefuse.deadline(0.45, clock=clock),
        pytest.raises(DeadlineExceeded) as refused,
    ):
        waiting.retry(decide, None, clock, clock.sleep)
    assert clock.sleeps == [0.2]
    assert refused.value.needed == pytest.approx(0.3)


# ---- the bulkhead ----


def test_a_full_bulkhead_refuses_at_once_with_no_time_left() -> None:
    clock = ManualClock()
    bulkhead = Bulkhead(1, max_wait=math.inf)
    bulkhead.acquire()
    with (
        ratefuse.deadline(0.0, clock=clock),
        pytest.raises(DeadlineExceeded) as refused,
    ):
        bulkhead.acquire()
    assert refused.value.what == "bulkhead"
    assert bulkhead.waiting == 0
    assert bulkhead.rejected == 1


def test_the_bulkhead_queue_waits_no_longer_than_the_deadline() -> None:
    bulkhead = Bulkhead(1, max_wait=math.inf)
    bulkhead.acquire()
    with ratefuse.deadline(0.005), pytest.raises(DeadlineExceeded):
        bulkhead.acquire()
    assert bulkhead.waiting == 0
    # A max_wait tighter than the deadline keeps its own error.
    with ratefuse.deadline(10.0), pytest.raises(BulkheadFullError) as full:
        bulkhead.acquire(timeout=0.001)
    assert full.value.retry_after is None


def test_the_async_bulkhead_queue_is_bounded_by_the_deadline() -> None:
    bulkhead = Bulkhead(1, max_wait=math.inf)

    async def main() -> None:
        await bulkhead.acquire_async()
        async with ratefuse.deadline(0.005):
            with pytest.raises(DeadlineExceeded):
                await bulkhead.acquire_async()
        assert bulkhead.waiting == 0

    asyncio.run(main())


def test_every_retriable_error_carries_retry_after() -> None:
    from ratefuse import BackendError, CallTimeout, CircuitOpenError

    decision = Decision(False, 0, 0.25, 1.0, 1)
    assert RateLimitExceeded(decision).retry_after == 0.25
    assert CircuitOpenError("b", 1.5).retry_after == 1.5
    assert BulkheadFullError("b", 1, 0.0).retry_after is None
    assert BackendError("down").retry_after is None
    assert CallTimeout("b", 1.0).retry_after is None
    assert DeadlineExceeded("acquire", 0.3, 0.1, 0.3).retry_after == 0.3


def test_the_new_errors_pickle_with_their_fields() -> None:
    import pickle

    from ratefuse import CallTimeout

    late = pickle.loads(pickle.dumps(DeadlineExceeded("acquire", 0.3, 0.1, 0.3)))
    assert (late.what, late.needed, late.remaining, late.retry_after) == (
        "acquire",
        0.3,
        0.1,
        0.3,
    )
    slow = pickle.loads(pickle.dumps(CallTimeout("b", 1.5)))
    assert (slow.name, slow.timeout, str(slow)) == (
        "b",
        1.5,
        "call through circuit breaker 'b' timed out after 1.5s",
    )
