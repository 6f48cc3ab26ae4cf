"""AdaptiveLimiter: the Bulkhead's forms over an adaptive limit, the
latencies it feeds (an injected clock), drops, the FIFO wait for threads
and tasks, and its stats. Waits that must time out are milliseconds long;
waits that must succeed are released by the test itself."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ratefuse import AdaptiveLimiter, AdaptiveLimitFullError, BulkheadFullError
from ratefuse.adaptive import AIMD, Gradient2, Vegas

MS = 1_000_000


class Clock:
    """`Clock` is a manual nanosecond clock."""

    def __init__(self) -> None:
        self.now = 1_000 * MS

    def __call__(self) -> int:
        return self.now


class Stop(BaseException):
    """`Stop` is an exception outside ``drop_on`` (as a cancellation is)."""


def aimd(limit: int = 2, **fields: Any) -> AIMD:
    return AIMD(initial_limit=limit, min_limit=1, max_limit=100, **fields)


def test_the_context_manager_feeds_latency_drops_and_ignores() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(aimd(4, backoff_ratio=0.5), clock=clock, name="db")
    with limiter, limiter:
        clock.now += 3 * MS
        assert limiter.in_flight == 2
    # Two calls of 3 ms: the first ends with the limit half used (2 of 4),
    # so it grows by 1/4; the second with 1 of 4.25, so it holds.
    assert (limiter.core.limit_micro, limiter.core.samples) == (4_250_000, 2)
    assert (limiter.limit, limiter.core.samples, limiter.core.last_rtt_ns) == (
        4,
        2,
        3 * MS,
    )
    with pytest.raises(ValueError, match="boom"), limiter:
        raise ValueError("boom")
    assert (limiter.limit, limiter.core.drops) == (2, 1)
    with pytest.raises(Stop), limiter:
        raise Stop
    stats = limiter.stats()
    assert (stats.samples, stats.drops, stats.in_flight) == (3, 1, 0)
    # The drop took no time on the manual clock: its latency is clamped to 1 ns.
    assert (stats.name, stats.algorithm, stats.last_rtt) == ("db", "AIMD", 1e-9)


def test_drop_on_chooses_the_exceptions_that_are_drops() -> None:
    limiter = AdaptiveLimiter(aimd(4), drop_on=(TimeoutError,))
    with pytest.raises(KeyError), limiter:
        raise KeyError("not the server's fault")
    assert (limiter.core.samples, limiter.core.drops) == (0, 0)
    with pytest.raises(TimeoutError), limiter:
        raise TimeoutError
    assert limiter.core.drops == 1


def test_a_full_limit_rejects_at_once_by_default() -> None:
    limiter = AdaptiveLimiter(aimd(1), name="api")
    permit = limiter.try_acquire()
    assert permit is not None
    assert limiter.try_acquire() is None
    with pytest.raises(AdaptiveLimitFullError) as caught:
        limiter.acquire()
    assert isinstance(caught.value, BulkheadFullError)
    assert str(caught.value) == (
        "adaptive limit 'api' is full: 1 calls running, none finished within 0s"
    )
    assert limiter.stats().rejected == 1
    permit.release()
    with pytest.raises(RuntimeError, match="already returned"):
        permit.release()
    assert limiter.in_flight == 0


def test_a_waiter_times_out_after_max_wait() -> None:
    limiter = AdaptiveLimiter(aimd(1), max_wait=0.005)
    permit = limiter.acquire()
    with pytest.raises(AdaptiveLimitFullError):
        limiter.acquire()
    assert (limiter.core.waiting, limiter.stats().rejected) == (0, 1)
    permit.ignore()
    assert limiter.try_acquire() is not None


def test_a_released_slot_goes_to_the_waiting_thread_before_newcomers() -> None:
    limiter = AdaptiveLimiter(aimd(1), max_wait=float("inf"))
    permit = limiter.acquire()
    got: list[Any] = []
    thread = threading.Thread(target=lambda: got.append(limiter.acquire()))
    thread.start()
    while limiter.core.waiting == 0:
        thread.join(0.001)
    assert limiter.try_acquire() is None
    permit.ignore()
    thread.join(5)
    assert not thread.is_alive()
    assert limiter.in_flight == 1
    got[0].release()
    assert limiter.in_flight == 0


def test_a_grown_limit_wakes_as_many_waiters_as_it_has_slots() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(aimd(1), max_wait=float("inf"), clock=clock)
    permit = limiter.acquire()
    got: list[Any] = []
    threads = [
        threading.Thread(target=lambda: got.append(limiter.acquire())) for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    while limiter.core.waiting < 2:
        threads[0].join(0.001)
    clock.now += MS
    permit.release()  # AIMD grows 1 -> 2: both waiters get a slot
    for thread in threads:
        thread.join(5)
    assert (len(got), limiter.in_flight, limiter.limit) == (2, 2, 2)


def test_async_forms_wait_and_cancel() -> None:
    asyncio.run(_async_forms_wait_and_cancel())


async def _async_forms_wait_and_cancel() -> None:
    clock = Clock()
    limiter = AdaptiveLimiter(aimd(1), max_wait=float("inf"), clock=clock)

    @limiter
    async def call(gate: asyncio.Event) -> str:
        await gate.wait()
        clock.now += 2 * MS
        return "done"

    gate = asyncio.Event()
    first = asyncio.create_task(call(gate))
    second = asyncio.create_task(call(gate))
    cancelled = asyncio.create_task(limiter.acquire_async())
    while limiter.core.waiting < 2:
        await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert limiter.core.waiting == 1
    gate.set()
    assert await asyncio.gather(first, second) == ["done", "done"]
    assert (limiter.in_flight, limiter.core.samples) == (0, 2)
    async with limiter as permit:
        assert permit.start_ns == clock.now
    assert limiter.in_flight == 0
    single = AdaptiveLimiter(aimd(1))
    with pytest.raises(AdaptiveLimitFullError):
        async with single, single:
            pass
    assert single.in_flight == 0


def test_decorated_functions_and_generators_hold_a_slot() -> None:
    limiter = AdaptiveLimiter(aimd(2))

    @limiter
    def work(fail: bool) -> int:
        assert limiter.in_flight == 1
        if fail:
            raise LookupError
        return 7

    @limiter
    def numbers() -> Iterator[int]:
        yield 1
        yield 2

    assert work(False) == 7
    with pytest.raises(LookupError):
        work(True)
    assert limiter.core.drops == 1
    iterator = numbers()
    assert next(iterator) == 1
    assert limiter.in_flight == 1
    assert list(iterator) == [2]
    assert (limiter.in_flight, limiter.core.samples) == (0, 3)


def test_async_generators_hold_a_slot() -> None:
    asyncio.run(_async_generators_hold_a_slot())


async def _async_generators_hold_a_slot() -> None:
    limiter = AdaptiveLimiter(aimd(2))

    @limiter
    async def numbers() -> AsyncIterator[int]:
        yield 1

    assert [n async for n in numbers()] == [1]
    assert (limiter.in_flight, limiter.core.samples) == (0, 1)


@pytest.mark.parametrize("algorithm", [AIMD(), Vegas(), Gradient2(), None])
def test_every_algorithm_fits(algorithm: Any) -> None:
    limiter = AdaptiveLimiter(algorithm)
    with limiter:
        pass
    assert limiter.core.samples == 1
    assert "in use" in repr(limiter)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AdaptiveLimiter("vegas"), "algorithm must be"),  # type: ignore[arg-type]
        (lambda: AdaptiveLimiter(max_wait=-1.0), "max_wait"),
        (lambda: AdaptiveLimiter(drop_on=ValueError), "drop_on"),  # type: ignore[arg-type]
        (lambda: AIMD(min_limit=5, max_limit=2), "min_limit"),
        (lambda: AIMD(initial_limit=0), "initial_limit"),
        (lambda: AIMD(backoff_ratio=1.0), "backoff_ratio"),
        (lambda: AIMD(timeout=0.0), "timeout"),
        (lambda: Vegas(alpha=5, beta=2), "beta"),
        (lambda: Vegas(probe_every=0), "probe_every"),
        (lambda: Gradient2(tolerance=0.5), "tolerance"),
        (lambda: Gradient2(smoothing=0.0), "smoothing"),
        (lambda: Gradient2(long_window=True), "long_window"),
    ],
)
def test_bad_configs_name_the_field(make: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_a_spent_deadline_refuses_the_wait_at_once() -> None:
    # max_wait is forever, but the running call's deadline has no time
    # left (a manual clock past it): refused at once, as the deadline's
    # error, sync and asyncio alike; the slot holder is unaffected.
    import ratefuse
    from ratefuse import DeadlineExceeded

    clock = Clock()
    limiter = AdaptiveLimiter(aimd(1), max_wait=float("inf"), name="api")
    permit = limiter.acquire()
    with ratefuse.deadline(0.5, clock=clock):
        clock.now += 600 * MS
        with pytest.raises(DeadlineExceeded) as caught:
            limiter.acquire()
        assert caught.value.what == "adaptive"

        async def wait_async() -> None:
            with pytest.raises(DeadlineExceeded):
                await limiter.acquire_async()

        asyncio.run(wait_async())
    assert (limiter.core.waiting, limiter.stats().rejected) == (0, 2)
    permit.release()
    assert limiter.in_flight == 0
