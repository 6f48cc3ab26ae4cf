"""FleetBreaker when Redis is lost in each state (the server killed,
paused with SIGSTOP, or never there): the breaker falls back to its local
breaker, seeded with the last fleet state, counts it, and follows the
fleet again once Redis answers. Time is injected; only the paused-server
tests wait, for one short client timeout per failed call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from fleet_breaker_support import (
    FleetClock,
    fail,
    flush_all,
    fresh_fleet_name,
    make_breaker,
    succeed,
)

from ratefuse.breaker import BreakerConfig, State
from ratefuse.redis import AsyncFleetBreaker, FleetBreaker
from redis_servers import RedisClusterServers, RedisServer, free_port

TIMEOUT = 0.2
CONFIG = BreakerConfig(
    window_size=10,
    minimum_calls=6,
    failure_rate_threshold=50.0,
    wait_duration=10.0,
    half_open_calls=3,
)


@pytest.fixture
def clock() -> FleetClock:
    return FleetClock()


@pytest.fixture
def pair(
    disposable_redis: RedisServer, clock: FleetClock
) -> Iterator[list[FleetBreaker]]:
    """`pair` is two breakers of one fleet on a server the test may kill or
    pause, with a short timeout."""
    clients = [
        redis.Redis(host="127.0.0.1", port=disposable_redis.port) for _ in range(2)
    ]
    name = fresh_fleet_name()
    breakers = [
        make_breaker(client, name, CONFIG, clock, timeout=TIMEOUT) for client in clients
    ]
    yield breakers
    if disposable_redis.process is not None:
        disposable_redis.resume()  # a test may have paused it
    for breaker in breakers:
        breaker.close()
    for client in clients:
        client.close()


def trip(breakers: list[FleetBreaker]) -> None:
    fail(breakers[0], 6)
    flush_all(breakers)
    assert [breaker.state for breaker in breakers] == [State.OPEN] * 2


def test_lost_in_closed_the_local_breaker_decides_then_the_fleet_again(
    pair: list[FleetBreaker], disposable_redis: RedisServer
) -> None:
    seen: list[tuple[State, State]] = []
    breaker = pair[0]
    breaker.add_listener(lambda _, old, new: seen.append((old, new)))
    fail(breaker, 2)
    disposable_redis.kill()
    breaker.flush()
    assert breaker.fallen_back
    stats = breaker.stats()
    assert (stats.fallbacks, stats.redis_errors, stats.outcomes_dropped) == (1, 1, 2)
    # The local breaker decides, with its own window.
    fail(breaker, 6)
    assert breaker.state == State.OPEN
    assert breaker.try_acquire() is None
    assert seen == [(State.CLOSED, State.OPEN)]
    # Still down: a flush tries Redis again and stays local.
    breaker.flush()
    assert breaker.fallen_back
    assert breaker.stats().redis_errors == 2
    disposable_redis.start()
    breaker.flush()
    assert not breaker.fallen_back
    assert breaker.stats().recoveries == 1
    # The restarted Redis lost the fleet state: the fleet is CLOSED.
    assert breaker.state == State.CLOSED
    assert seen[-1] == (State.OPEN, State.CLOSED)
    succeed(breaker)


def test_lost_in_open_stays_open_locally_then_follows_the_fleet(
    pair: list[FleetBreaker], disposable_redis: RedisServer, clock: FleetClock
) -> None:
    trip(pair)
    disposable_redis.pause()
    clock.advance(10.0)
    # Past the fleet's wait a call asks Redis for a probe, and Redis is lost:
    # the local breaker, seeded OPEN, starts its own wait.
    started = time.monotonic()
    assert pair[1].try_acquire() is None
    assert time.monotonic() - started < TIMEOUT + 2.0
    assert pair[1].fallen_back
    assert pair[1].state == State.OPEN
    assert pair[1].retry_after() == pytest.approx(10.0)
    disposable_redis.resume()
    pair[1].flush()
    # Redis kept the fleet state: OPEN with its wait over, or HALF_OPEN if
    # the request that timed out ran once Redis resumed (it then took a
    # probe nobody got). Either way the next call gets one of the probes.
    assert not pair[1].fallen_back
    assert pair[1].state in (State.OPEN, State.HALF_OPEN)
    assert pair[1].try_acquire() is not None
    assert pair[1].state == State.HALF_OPEN


def test_lost_in_half_open_falls_back_open_and_recovers_the_round(
    pair: list[FleetBreaker], disposable_redis: RedisServer, clock: FleetClock
) -> None:
    trip(pair)
    clock.advance(10.0)
    probe = pair[0].try_acquire()
    assert probe is not None
    assert pair[0].state == State.HALF_OPEN
    disposable_redis.pause()
    probe.on_success(0.0)  # wakes the flusher; this test flushes by hand
    pair[0].flush()
    assert pair[0].fallen_back
    assert pair[0].state == State.OPEN  # no local probes before its own wait
    disposable_redis.resume()
    flush_all(pair)
    assert not pair[0].fallen_back
    assert [breaker.state for breaker in pair] == [State.HALF_OPEN] * 2
    # At most half_open_calls probes in the round, fleet-wide, whatever
    # became of the lost one.
    clock.advance(1.0)
    granted = [breaker.try_acquire() for breaker in pair for _ in range(3)]
    assert 2 <= sum(permit is not None for permit in granted) <= 3


def test_an_unreachable_redis_at_construction_falls_back_at_once(
    clock: FleetClock,
) -> None:
    client = redis.Redis(host="127.0.0.1", port=free_port())
    try:
        with make_breaker(
            client, fresh_fleet_name(), CONFIG, clock, timeout=TIMEOUT
        ) as breaker:
            assert breaker.fallen_back
            assert breaker.stats().fallbacks == 1

            @breaker
            def upstream() -> str:
                return "answered"

            assert upstream() == "answered"
            assert breaker.metrics().calls == 1  # the local window
    finally:
        client.close()


def test_a_lost_cluster_falls_back_instead_of_raising(clock: FleetClock) -> None:
    # A cluster client reports unreachable nodes with RedisClusterException
    # ("cannot be connected"), which is no RedisError: the breaker raised it
    # from its constructor, flush and try_acquire instead of falling back.
    cluster = RedisClusterServers().start()
    client = None
    try:
        client = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
        name = fresh_fleet_name()
        with make_breaker(client, name, CONFIG, clock, timeout=TIMEOUT) as live:
            assert not live.fallen_back
            cluster.stop()  # lost mid-life: the next flush falls back
            live.flush()
            assert live.fallen_back
            assert live.try_acquire() is not None
        # Lost before construction: the breaker's own client cannot start.
        with make_breaker(client, name, CONFIG, clock, timeout=TIMEOUT) as late:
            assert late.fallen_back
            assert late.stats().fallbacks == 1
            assert late.try_acquire() is not None
    finally:
        cluster.stop()
        if client is not None:
            client.close()


def test_an_async_unreachable_cluster_falls_back(clock: FleetClock) -> None:
    async def main() -> tuple[bool, bool]:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=free_port())
        try:
            async with AsyncFleetBreaker(
                fresh_fleet_name(), CONFIG, client=client, timeout=TIMEOUT
            ) as breaker:
                return breaker.fallen_back, await breaker.try_acquire() is not None
        finally:
            await client.aclose()

    assert asyncio.run(main()) == (True, True)


def test_the_background_flusher_falls_back_and_recovers(
    disposable_redis: RedisServer,
) -> None:
    client = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    try:
        with FleetBreaker(
            fresh_fleet_name(),
            CONFIG,
            client=client,
            flush_interval=0.005,
            timeout=TIMEOUT,
        ) as breaker:
            assert not breaker.fallen_back
            disposable_redis.kill()
            assert wait_for(lambda: breaker.fallen_back)
            disposable_redis.start()
            assert wait_for(lambda: not breaker.fallen_back)
            stats = breaker.stats()
            assert stats.fallbacks == 1
            assert stats.recoveries == 1
    finally:
        client.close()


def wait_for(condition, limit: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
    # Polls the background thread's progress (I/O), bounded.
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True
