"""Threads and asyncio tasks racing into HALF_OPEN never get more than
``half_open_calls`` probes through, and every probe is accounted for."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from breaker_support import ManualClock, make_breaker
from ratefuse.breaker import BreakerConfig, CircuitBreaker, State
from ratefuse.core.errors import CircuitOpenError

HALF_OPEN_CALLS = 3
CONFIG = BreakerConfig(
    window_size=4,
    minimum_calls=HALF_OPEN_CALLS,
    wait_duration=1.0,
    half_open_calls=HALF_OPEN_CALLS,
)
CALLERS = 24


@pytest.fixture(autouse=True)
def frequent_switches() -> Iterator[None]:
    # Switch threads every few microseconds so that races get a chance.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(interval)


def half_open_soon(impl: Any) -> CircuitBreaker:
    """`half_open_soon` is an OPEN breaker whose wait is over."""
    clock = ManualClock()
    breaker = make_breaker(impl, CONFIG, clock=clock)
    breaker.transition_to(State.OPEN)
    clock.advance(1)
    return breaker


class Probes:
    """`Probes` counts calls inside the guarded function, and holds them
    there until released."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.most = 0
        self.rejected = 0
        self.release = threading.Event()

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.most = max(self.most, self.inside)

    def settled(self, callers: int) -> bool:
        with self.lock:
            return self.inside + self.rejected == callers


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "callers did not settle"
        time.sleep(0.001)


def race_into_half_open(impl: Any, form: str) -> None:
    """`race_into_half_open` lets CALLERS threads ask a breaker whose wait is
    over for a permit at once, holding the ones they get."""
    breaker = half_open_soon(impl)
    probes = Probes()
    start = threading.Barrier(CALLERS)

    @breaker
    def probe() -> None:
        probes.enter()
        probes.release.wait()

    def caller() -> None:
        start.wait()
        if form == "decorator":
            try:
                probe()
            except CircuitOpenError:
                with probes.lock:
                    probes.rejected += 1
            return
        permit = breaker.try_acquire()
        if permit is None:
            with probes.lock:
                probes.rejected += 1
            return
        probes.enter()
        probes.release.wait()
        permit.on_success(0.0)

    threads = [threading.Thread(target=caller, daemon=True) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: probes.settled(CALLERS))
        assert probes.inside == HALF_OPEN_CALLS
        assert probes.most == HALF_OPEN_CALLS
        metrics = breaker.metrics()
        assert metrics.probes_issued == HALF_OPEN_CALLS
        assert metrics.rejected_calls == CALLERS - HALF_OPEN_CALLS
    finally:
        probes.release.set()
        for thread in threads:
            thread.join()
    assert breaker.state == State.CLOSED
    # Each state counts its own rejections; the counters keep them all.
    assert breaker.metrics().rejected_calls == 0
    assert breaker.counters().rejected == CALLERS - HALF_OPEN_CALLS


@pytest.mark.parametrize("form", ["decorator", "two_step"])
def test_threads_never_exceed_half_open_calls(impl: Any, form: str) -> None:
    for _ in range(5):
        race_into_half_open(impl, form)


def test_tasks_never_exceed_half_open_calls(impl: Any) -> None:
    breaker = half_open_soon(impl)
    inside = 0
    most = 0
    release = asyncio.Event()

    @breaker
    async def probe() -> None:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await release.wait()
        inside -= 1

    async def caller() -> str:
        await asyncio.sleep(0)
        try:
            await probe()
        except CircuitOpenError:
            return "rejected"
        return "probed"

    async def main() -> list[str]:
        tasks = [asyncio.create_task(caller()) for _ in range(CALLERS)]
        while inside + sum(task.done() for task in tasks) < CALLERS:
            await asyncio.sleep(0)
        assert inside == HALF_OPEN_CALLS
        release.set()
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    assert results.count("probed") == HALF_OPEN_CALLS
    assert most == HALF_OPEN_CALLS
    assert breaker.state == State.CLOSED


def test_threads_counting_outcomes_lose_none(impl: Any) -> None:
    # Many threads recording into one CLOSED window: the totals add up.
    breaker = make_breaker(
        impl, BreakerConfig(window_size=100_000, minimum_calls=100_000)
    )
    per_thread = 2_000

    def caller() -> None:
        for index in range(per_thread):
            permit = breaker.try_acquire()
            assert permit is not None
            if index % 4:
                permit.on_success(0.0)
            else:
                permit.on_error(0.0, ValueError())

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metrics = breaker.metrics()
    assert (metrics.calls, metrics.failed_calls) == (8 * per_thread, 2 * per_thread)
