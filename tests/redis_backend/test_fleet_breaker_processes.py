"""A fleet of real processes shares one FleetBreaker: failures that no
process alone could trip on open the breaker for all of them, through
their background flushers, and a probe round hands out half_open_calls
permits to the whole fleet."""

from __future__ import annotations

import multiprocessing
import queue

import redis
from fleet_breaker_support import WORKER_CONFIG, fresh_fleet_name, worker

from ratefuse.breaker import State
from ratefuse.redis import FleetBreaker
from redis_servers import RedisServer

PROCESSES = 4


def test_real_processes_trip_together_and_share_the_probes(
    redis_node: RedisServer,
) -> None:
    name = fresh_fleet_name()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES + 1)
    probe_round = context.Event()
    results = context.Queue()
    # 2 failures each: 8 calls fleet-wide reach minimum_calls; no process
    # alone does.
    processes = [
        context.Process(
            target=worker,
            args=(redis_node.port, name, 2, barrier, probe_round, results),
        )
        for _ in range(PROCESSES)
    ]
    client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    try:
        for process in processes:
            process.start()
        barrier.wait(timeout=120)
        opened = [results.get(timeout=60) for _ in range(PROCESSES)]
        assert opened == [("open", True, True)] * PROCESSES
        with FleetBreaker(
            name, WORKER_CONFIG, client=client, background=False, timeout=10.0
        ) as parent:
            assert parent.state == State.OPEN
            assert parent.metrics().calls == 2 * PROCESSES
            parent.transition_to(State.HALF_OPEN)
            probe_round.set()
            rounds = [results.get(timeout=60) for _ in range(PROCESSES)]
            assert all(kind == "probes" and seen for kind, seen, _ in rounds)
            assert sum(permits for _, _, permits in rounds) == 3
            parent.flush()
            assert parent.metrics().probes_issued == 3
        for process in processes:
            process.join(timeout=60)
            assert process.exitcode == 0
    finally:
        for process in processes:
            if process.is_alive():
                process.kill()
                process.join()
        client.close()
        try:
            while True:
                results.get_nowait()
        except queue.Empty:
            pass
        results.close()
        results.join_thread()
