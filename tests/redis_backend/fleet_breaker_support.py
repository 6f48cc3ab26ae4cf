"""Helpers of the fleet breaker tests: a shared manual clock, fleets of
breakers with their own connections, and the worker of the process test."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import redis

from ratefuse.breaker import BreakerConfig
from ratefuse.redis import FleetBreaker

S = 1_000_000_000
_names = itertools.count()


def fresh_fleet_name() -> str:
    """`fresh_fleet_name` is a breaker name no other test uses."""
    return f"fleet-test-{next(_names)}"


class FleetClock:
    """`FleetClock` is one manual time for the local clock (ns) and the
    script (us): the fleet's processes and its Redis agree on it."""

    def __init__(self, now_ns: int = 1_000 * S) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns

    def server_us(self) -> int:
        """`server_us` is the time the script uses, in microseconds."""
        return self.now_ns // 1000

    def advance(self, seconds: float) -> None:
        """`advance` moves time on by ``seconds``."""
        self.now_ns += round(seconds * S)


def make_breaker(
    client: redis.Redis | redis.RedisCluster,
    name: str,
    config: BreakerConfig,
    clock: FleetClock,
    **options: Any,
) -> FleetBreaker:
    """`make_breaker` is a FleetBreaker on the manual clock with no flusher
    thread (tests flush by hand) and a generous timeout (the machine may be
    loaded; the failure tests set their own)."""
    options.setdefault("background", False)
    options.setdefault("timeout", 5.0)
    return FleetBreaker(
        name,
        config,
        client=client,
        clock=clock,
        redis_clock=clock.server_us,
        **options,
    )


def fail(breaker: FleetBreaker, times: int = 1) -> None:
    """`fail` records ``times`` failed calls through the two-step form."""
    for _ in range(times):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.on_error(0.0, RuntimeError("upstream down"))


def succeed(breaker: FleetBreaker, times: int = 1) -> None:
    """`succeed` records ``times`` successful calls."""
    for _ in range(times):
        permit = breaker.try_acquire()
        assert permit is not None
        permit.on_success(0.0)


def flush_all(breakers: list[FleetBreaker]) -> None:
    """`flush_all` flushes every breaker once, in order."""
    for breaker in breakers:
        breaker.flush()


def worker(
    port: int, name: str, failures: int, barrier: Any, probe_round: Any, results: Any
) -> None:
    """`worker` is one process of the fleet test. It records ``failures``
    failures (too few to trip anything alone), waits (bounded) until its
    background flusher reports the fleet OPEN and reports whether it then
    rejects a call; after the parent has moved the fleet to HALF_OPEN, it
    waits to see that, asks for five permits and reports how many it got."""
    from ratefuse.breaker import State

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        with FleetBreaker(
            name,
            WORKER_CONFIG,
            client=client,
            batch_size=4,
            flush_interval=0.01,
            timeout=10.0,
        ) as breaker:
            fail(breaker, failures)
            barrier.wait(timeout=60)
            opened = _wait_for(lambda: breaker.state == State.OPEN)
            results.put(("open", opened, breaker.try_acquire() is None))
            probe_round.wait(timeout=60)
            half_open = _wait_for(lambda: breaker.state == State.HALF_OPEN)
            permits = sum(breaker.try_acquire() is not None for _ in range(5))
            results.put(("probes", half_open, permits))
    finally:
        client.close()


# Trips at 8 calls of which half failed; waits an hour (the test moves the
# fleet to HALF_OPEN by hand); 3 probes per round, fleet-wide.
WORKER_CONFIG = BreakerConfig(
    window_size=100,
    minimum_calls=8,
    failure_rate_threshold=50.0,
    wait_duration=3600.0,
    half_open_calls=3,
)


def _wait_for(condition: Callable[[], bool], limit: float = 30.0) -> bool:
    # Polls ``condition`` every millisecond until true or ``limit`` seconds:
    # waiting for the flusher's I/O, not for time to pass.
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True
