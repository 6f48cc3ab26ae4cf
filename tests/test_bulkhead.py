"""Bulkhead: the concurrency limit, its bounded wait, sync and async.

Nothing here sleeps longer than a few milliseconds: waits that must time out
use a max_wait of milliseconds, and waits that must succeed are released by
the test itself.
"""

from __future__ import annotations

import asyncio
import math
import os
import signal
import threading
import time
from typing import Any

import pytest

from ratefuse.bulkhead import Bulkhead, BulkheadFullError
from ratefuse.core.errors import RatefuseError


def test_try_acquire_and_release() -> None:
    bulkhead = Bulkhead(2)
    assert bulkhead.try_acquire()
    assert bulkhead.try_acquire()
    assert not bulkhead.try_acquire()
    assert (bulkhead.in_use, bulkhead.available, bulkhead.rejected) == (2, 0, 0)
    bulkhead.release()
    assert bulkhead.available == 1
    bulkhead.release()
    with pytest.raises(RuntimeError, match="released too many times"):
        bulkhead.release()


def test_a_full_bulkhead_rejects_at_once_by_default() -> None:
    bulkhead = Bulkhead(1, name="db")
    with bulkhead:
        started = time.monotonic()
        with pytest.raises(BulkheadFullError) as caught:
            bulkhead.acquire()
        assert time.monotonic() - started < 0.5
    assert isinstance(caught.value, RatefuseError)
    assert (caught.value.name, caught.value.max_concurrent) == ("db", 1)
    assert str(caught.value) == (
        "bulkhead 'db' is full: 1 calls running, none finished within 0s"
    )
    assert bulkhead.rejected == 1
    assert bulkhead.in_use == 0


def test_a_sync_waiter_times_out_after_max_wait() -> None:
    bulkhead = Bulkhead(1, max_wait=0.005)
    bulkhead.acquire()
    started = time.monotonic()
    with pytest.raises(BulkheadFullError):
        bulkhead.acquire()
    assert time.monotonic() - started >= 0.004
    with pytest.raises(BulkheadFullError):
        bulkhead.acquire(timeout=0.001)
    assert (bulkhead.rejected, bulkhead.waiting, bulkhead.in_use) == (2, 0, 1)


def test_a_released_slot_goes_to_the_waiting_thread() -> None:
    bulkhead = Bulkhead(1, max_wait=math.inf)
    bulkhead.acquire()
    acquired = threading.Event()

    def waiter() -> None:
        bulkhead.acquire()
        acquired.set()

    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while bulkhead.waiting == 0:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert not bulkhead.try_acquire()
    bulkhead.release()
    assert acquired.wait(5)
    thread.join()
    assert (bulkhead.in_use, bulkhead.waiting) == (1, 0)
    bulkhead.release()


def test_waiters_are_served_first_come_first_served() -> None:
    bulkhead = Bulkhead(1, max_wait=5.0)
    bulkhead.acquire()
    order: list[int] = []

    def waiter(index: int) -> None:
        with bulkhead:
            order.append(index)

    threads = []
    for index in range(4):
        thread = threading.Thread(target=waiter, args=(index,), daemon=True)
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 5
        while bulkhead.waiting < index + 1:
            assert time.monotonic() < deadline
            time.sleep(0.001)
    bulkhead.release()
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3]
    assert bulkhead.in_use == 0


def test_threads_never_exceed_max_concurrent() -> None:
    bulkhead = Bulkhead(3, max_wait=math.inf)
    lock = threading.Lock()
    inside = most = entries = 0
    # The first three calls meet inside, so the bulkhead is seen full
    # whatever the scheduler does (a sleep alone left it at 2 under load);
    # a bulkhead admitting fewer than 3 would break the barrier.
    first_three = threading.Barrier(3)

    @bulkhead
    def work() -> None:
        nonlocal inside, most, entries
        with lock:
            inside += 1
            most = max(most, inside)
            entries += 1
            meet = entries <= 3
        if meet:
            first_three.wait(timeout=10)
        time.sleep(0.0005)
        with lock:
            inside -= 1

    threads = [
        threading.Thread(target=lambda: [work() for _ in range(5)], daemon=True)
        for _ in range(12)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most == 3
    assert (bulkhead.in_use, bulkhead.rejected) == (0, 0)


def test_async_tasks_never_exceed_max_concurrent() -> None:
    bulkhead = Bulkhead(2, max_wait=math.inf)
    inside = most = 0

    @bulkhead
    async def work(x: int) -> int:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        inside -= 1
        return x

    async def main() -> list[int]:
        return await asyncio.gather(*(work(x) for x in range(20)))

    assert asyncio.run(main()) == list(range(20))
    assert most == 2
    assert work.__name__ == "work"
    assert bulkhead.in_use == 0


def test_an_async_waiter_times_out_and_is_counted() -> None:
    bulkhead = Bulkhead(1, max_wait=0.002)

    async def main() -> None:
        async with bulkhead:
            with pytest.raises(BulkheadFullError):
                await bulkhead.acquire_async()
            with pytest.raises(BulkheadFullError):
                await bulkhead.acquire_async(timeout=0)

    asyncio.run(main())
    assert (bulkhead.rejected, bulkhead.waiting, bulkhead.in_use) == (2, 0, 0)


def test_a_cancelled_async_waiter_takes_no_slot() -> None:
    bulkhead = Bulkhead(1, max_wait=math.inf)

    async def main() -> None:
        await bulkhead.acquire_async()
        task = asyncio.create_task(bulkhead.acquire_async())
        await asyncio.sleep(0)
        assert bulkhead.waiting == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert bulkhead.waiting == 0
        bulkhead.release()
        assert bulkhead.in_use == 0

    asyncio.run(main())
    assert bulkhead.rejected == 0


def test_a_slot_granted_to_a_cancelled_waiter_passes_on() -> None:
    # release() hands the slot over, then the waiter is cancelled before it
    # runs: the slot must go to the next waiter, not leak.
    bulkhead = Bulkhead(1, max_wait=math.inf)

    async def main() -> None:
        await bulkhead.acquire_async()
        first = asyncio.create_task(bulkhead.acquire_async())
        second = asyncio.create_task(bulkhead.acquire_async())
        await asyncio.sleep(0)
        assert bulkhead.waiting == 2
        bulkhead.release()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await asyncio.wait_for(second, 5)
        assert (bulkhead.in_use, bulkhead.waiting) == (1, 0)
        bulkhead.release()

    asyncio.run(main())
    assert bulkhead.in_use == 0


def test_a_thread_releases_to_an_async_waiter() -> None:
    bulkhead = Bulkhead(1, max_wait=math.inf)
    bulkhead.acquire()

    async def main() -> None:
        waiting = asyncio.create_task(bulkhead.acquire_async())
        await asyncio.sleep(0)
        threading.Thread(target=bulkhead.release).start()
        await asyncio.wait_for(waiting, 5)

    asyncio.run(main())
    assert bulkhead.in_use == 1


def test_call_and_decorators_release_on_errors() -> None:
    bulkhead = Bulkhead(1)

    def fail() -> None:
        raise KeyError("x")

    async def afail() -> None:
        raise KeyError("y")

    with pytest.raises(KeyError):
        bulkhead.call(fail)
    with pytest.raises(KeyError):
        asyncio.run(bulkhead.call(afail))
    assert bulkhead.call(divmod, 7, 2) == (3, 1)
    assert bulkhead.in_use == 0
    assert repr(bulkhead) == "<Bulkhead 'bulkhead' 0/1 in use, 0 waiting>"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_concurrent": 0}, "max_concurrent must be >= 1, got 0"),
        ({"max_concurrent": 1.5}, "max_concurrent must be an int, got 1.5"),
        ({"max_concurrent": True}, "max_concurrent must be an int, got True"),
        ({"max_concurrent": 1, "max_wait": -1}, "max_wait must be >= 0 seconds"),
        ({"max_concurrent": 1, "max_wait": math.nan}, "max_wait must be >= 0"),
        ({"max_concurrent": 1, "max_wait": "1"}, "max_wait must be seconds"),
    ],
)
def test_bad_arguments_raise_value_error(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Bulkhead(**arguments)


def test_a_bad_timeout_raises_value_error() -> None:
    bulkhead = Bulkhead(1)
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        bulkhead.acquire(timeout=-0.5)


class Interrupt(BaseException):
    """`Interrupt` is what the test's signal handler raises."""


def _raise_interrupt(signum: int, frame: object) -> None:
    raise Interrupt


def test_a_waiter_interrupted_by_a_signal_leaves_the_queue() -> None:
    # Issue 21 item 4: the interrupted waiter stayed queued, the next
    # release handed it the slot, and the bulkhead was full for ever.
    bulkhead = Bulkhead(max_concurrent=1, max_wait=math.inf)
    assert bulkhead.try_acquire()
    previous = signal.signal(signal.SIGUSR1, _raise_interrupt)

    def interrupt_once_queued() -> None:
        while bulkhead.waiting == 0:
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGUSR1)

    sender = threading.Thread(target=interrupt_once_queued)
    try:
        sender.start()
        with pytest.raises(Interrupt):
            bulkhead.acquire()
    finally:
        sender.join()
        signal.signal(signal.SIGUSR1, previous)
    assert bulkhead.waiting == 0
    bulkhead.release()
    assert bulkhead.in_use == 0
    assert bulkhead.try_acquire()
    bulkhead.release()


def test_a_slot_granted_to_a_waiter_of_a_closed_loop_passes_on() -> None:
    bulkhead = Bulkhead(max_concurrent=1, max_wait=math.inf)
    assert bulkhead.try_acquire()
    loop = asyncio.new_event_loop()
    task = loop.create_task(bulkhead.acquire_async())
    loop.run_until_complete(asyncio.sleep(0))
    assert bulkhead.waiting == 1
    loop.close()
    bulkhead.release()
    assert bulkhead.in_use == 0
    assert bulkhead.try_acquire()
    bulkhead.release()
    task.get_coro().close()  # what the task's finalizer does
    assert bulkhead.in_use == 0
