"""Accuracy and crash safety across processes, both implementations.

Eight spawned processes hammer one table. Time is a counter in a file that
every decision advances by STEP_NS under ``flock`` (released by the kernel
when a holder is killed), so the bound is exact and nothing sleeps to let
time pass: over the times used, GCRA admits at most
``burst + (last - first) / T`` however the processes interleave (each
admission moves the tat by T, and the tat may lead the time by at most
tau), and a correct shared limiter reaches at least 95% of it. Some tests
SIGKILL workers mid-traffic; the survivors, and a process started
afterwards, must still decide exactly, and the table must stay consistent.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from ratefuse.rates import Rate
from ratefuse.shm import ShmBackend
from shm_support import (
    STEP_NS,
    SharedClock,
    check_consistent,
    core,
    fresh_worker,
    hammer_worker,
    inherited_worker,
)

CONTEXT = multiprocessing.get_context("spawn")
WORKERS = 8
RATE = Rate(1000, 1.0, 50)  # T = 1 ms, burst 50: offered 4x the rate
T_NS = 1_000_000
JOIN_TIMEOUT_S = 60.0


def hammer(
    impl_name: str,
    backend: ShmBackend,
    tmp_path,
    *,
    calls: int,
    keys: int = 1,
    kill: int = 0,
    rate: Rate = RATE,
) -> tuple[int, int, list[int | None]]:
    """`hammer` runs WORKERS hammer_workers on ``backend`` and SIGKILLs
    ``kill`` of them at even steps through the first half of the run.
    Returns the admissions reported, the last clock tick and the exit codes."""
    clock = SharedClock(str(tmp_path / "clock"))
    admitted = CONTEXT.RawArray("q", WORKERS)
    workers = [
        CONTEXT.Process(
            target=hammer_worker,
            args=(
                *(impl_name, backend.path, backend.max_keys, rate, keys, calls),
                *(clock.path, admitted, index),
            ),
        )
        for index in range(WORKERS)
    ]
    try:
        for worker in workers:
            worker.start()
        clock.go(WORKERS, JOIN_TIMEOUT_S)
        total = calls * WORKERS
        for victim in range(kill):
            deadline = time.monotonic() + JOIN_TIMEOUT_S
            while clock.value < total * (victim + 1) // (2 * kill + 2):
                assert time.monotonic() < deadline, "the workers stopped"
                time.sleep(0.001)  # waits for traffic; limiter time is the clock's
            os.kill(workers[victim].pid, signal.SIGKILL)
        for worker in workers:
            worker.join(JOIN_TIMEOUT_S)
            assert not worker.is_alive(), "a worker hung"
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join()
    ticks = clock.value
    clock.close()
    return sum(admitted), ticks, [worker.exitcode for worker in workers]


def bound(ticks: int) -> int:
    """`bound` is the most GCRA may admit over clock ticks 1..ticks."""
    return RATE.capacity + (ticks - 1) * STEP_NS // T_NS


def fresh(
    impl_name: str,
    backend: ShmBackend,
    keys: int,
    calls: int,
    now: int,
    rate: Rate = RATE,
):
    """`fresh` runs a fresh_worker and returns its admissions per key."""
    admitted = CONTEXT.RawArray("q", keys)
    process = CONTEXT.Process(
        target=fresh_worker,
        args=(
            *(impl_name, backend.path, backend.max_keys, rate, keys, calls, now),
            admitted,
        ),
    )
    process.start()
    process.join(JOIN_TIMEOUT_S)
    assert process.exitcode == 0
    return list(admitted)


@pytest.fixture
def backend(tmp_path, impl) -> ShmBackend:
    """`backend` is a new table of ``impl`` created by this process."""
    table = ShmBackend(tmp_path / "table", 64)
    core(impl.name, table, RATE).close()
    return table


def test_eight_processes_on_one_key_hold_the_exact_bound(impl, backend, tmp_path):
    admitted, ticks, codes = hammer(impl.name, backend, tmp_path, calls=2_500)
    assert codes == [0] * WORKERS
    assert ticks == 2_500 * WORKERS
    assert 0.95 * bound(ticks) <= admitted <= bound(ticks), (admitted, bound(ticks))
    check_consistent(backend.path)


def test_killed_workers_leave_an_exact_and_usable_table(impl, backend, tmp_path):
    admitted, ticks, codes = hammer(impl.name, backend, tmp_path, calls=2_500, kill=3)
    assert codes[:3] == [-signal.SIGKILL] * 3
    assert codes[3:] == [0] * (WORKERS - 3)
    # Each killed worker may have made one admission it did not report.
    assert 0.95 * bound(ticks) - 3 <= admitted <= bound(ticks)
    check_consistent(backend.path)
    # A process started now decides exactly: the bucket refills to its
    # burst once a full tau has passed since the last admission, no more.
    later = ticks * STEP_NS + 2 * RATE.capacity * T_NS
    assert fresh(impl.name, backend, 1, RATE.capacity + 5, later) == [RATE.capacity]


def test_killed_workers_mid_insertion_leave_a_consistent_table(impl, tmp_path):
    # One bucket of 15 slots and 40 keys in turn, each busy for 100 ms
    # (400 ticks) after an admission: nearly every decision inserts a key
    # and evicts another, so kills land in insertions.
    slow = Rate(10, 1.0, 5)
    backend = ShmBackend(tmp_path / "table", 1)
    limiter = core(impl.name, backend, slow)
    _, ticks, codes = hammer(
        impl.name, backend, tmp_path, calls=1_500, keys=40, kill=3, rate=slow
    )
    assert codes == [-signal.SIGKILL] * 3 + [0] * (WORKERS - 3)
    check_consistent(backend.path)
    assert limiter.stats()["evictions"] > 1_000
    later = ticks * STEP_NS + 1_000 * T_NS  # every state idle again
    assert fresh(impl.name, backend, 40, 1, later, slow) == [1] * 40
    check_consistent(backend.path)


def test_processes_creating_a_table_at_once_share_one(impl, tmp_path):
    backend = ShmBackend(tmp_path / "new", 64)
    admitted = CONTEXT.RawArray("q", WORKERS)
    start = CONTEXT.Barrier(WORKERS)
    creators = [
        CONTEXT.Process(
            target=fresh_worker,
            args=(impl.name, backend.path, 64, RATE, 1, 10, 0, admitted, start, index),
        )
        for index in range(WORKERS)
    ]
    for creator in creators:
        creator.start()
    for creator in creators:
        creator.join(JOIN_TIMEOUT_S)
        assert creator.exitcode == 0
    # One table: 8 x 10 calls on one key admit exactly the burst.
    assert sum(admitted) == RATE.capacity
    assert os.listdir(tmp_path) == ["new"]


def test_states_outlive_the_processes(impl, backend):
    for _ in range(2):
        assert fresh(impl.name, backend, 10, 3, 0) == [3] * 10
    backend_again = ShmBackend(backend.path, backend.max_keys)
    reopened = core(impl.name, backend_again, RATE)
    assert [reopened.decide(key, 0, 0).remaining for key in range(10)] == [44] * 10
    assert fresh(impl.name, backend, 1, 50, 0) == [44]


def test_a_limiter_built_before_fork_is_shared_by_the_children(impl, backend):
    # gunicorn --preload: the app (and its limiter) is built in the master.
    limiter = core(impl.name, backend, RATE)
    fork = multiprocessing.get_context("fork")
    admitted = fork.RawArray("q", 4)
    children = [
        fork.Process(target=inherited_worker, args=(limiter, 30, 0, admitted, index))
        for index in range(4)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(JOIN_TIMEOUT_S)
        assert child.exitcode == 0
    assert sum(admitted) == RATE.capacity
    assert not limiter.try_acquire("k", 1, 0)
