"""Accuracy: 8 processes hammer one key; the fleet admits within the exact
GCRA bound over the server-clock interval they ran in, and at 95% of it or
more (a limiter that admits nothing is also wrong)."""

from __future__ import annotations

import multiprocessing

from ratefuse import Rate
from redis_servers import gather, hammer

PROCESSES = 8
DECISIONS = 400
# Per second: far below what the workers ask even on a loaded machine
# (the floor needs them to ask faster than the rate; at 500/s, 8 workers
# with 20 ms round trips under a load of 11 asked too slowly once).
RATE, BURST = 100, 10


def covered(spans: list[tuple[int, int]]) -> int:
    """`covered` is the length of the union of the ``(start, end)`` spans."""
    total, reach = 0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def test_covered_counts_overlaps_once_and_gaps_not_at_all() -> None:
    assert covered([(0, 10), (5, 15), (20, 30)]) == 25
    assert covered([(0, 10), (2, 3)]) == 10
    assert covered([]) == 0


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
    # The floor counts only the time some worker was asking: on a loaded
    # machine a worker may start after others finished, and no limiter can
    # admit requests nobody makes (a floor over the whole span failed once:
    # 134 admitted against 134.2). Units accrue whole: a run of 8.99
    # intervals admits BURST + 8, so the floor gives one unit (18 admitted
    # against 18.04 failed once, in a 90 ms run).
    asking_us = covered([(report[1], report[2]) for report in reports])
    assert admitted + 1 >= 0.95 * (BURST + asking_us / interval_us), (
        admitted,
        bound,
        asking_us,
    )
    print(f"admitted {admitted} of at most {bound} in {elapsed_us} us")
    assert admitted < PROCESSES * DECISIONS  # the limit was binding
