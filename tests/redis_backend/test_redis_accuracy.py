"""Accuracy: 8 processes hammer one key; the fleet admits within the exact
GCRA bound over the server-clock interval they ran in, and at 95% of it or
more (a limiter that admits nothing is also wrong)."""

from __future__ import annotations

import multiprocessing

from ratefuse import Rate
from redis_servers import gather, hammer

PROCESSES = 8
DECISIONS = 400
RATE, BURST = 500, 10  # per second: far below what even one worker asks


def test_eight_processes_share_one_quota_exactly(redis_node, fresh_name) -> None:
    # forkserver: one clean process imports everything once and forks the
    # workers (fork from the test process itself would copy its threads).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["redis_servers", "ratefuse.redis"])
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    name = fresh_name()
    limits = Rate(RATE, 1.0, burst=BURST)
    workers = [
        context.Process(
            target=hammer,
            args=(redis_node.port, name, limits, DECISIONS, barrier, results),
            daemon=True,
        )
        for _ in range(PROCESSES)
    ]
    reports = gather(workers, results)
    admitted = sum(report[0] for report in reports)
    elapsed_us = max(report[2] for report in reports) - min(
        report[1] for report in reports
    )
    interval_us = 1_000_000 // RATE
    # A new key has BURST units; then one more every interval.
    bound = BURST + elapsed_us // interval_us + 1
    assert admitted <= bound, (admitted, bound, elapsed_us)
    assert admitted >= 0.95 * (BURST + elapsed_us / interval_us), (
        admitted,
        bound,
        elapsed_us,
    )
    print(f"admitted {admitted} of at most {bound} in {elapsed_us} us")
    assert admitted < PROCESSES * DECISIONS  # the limit was binding
