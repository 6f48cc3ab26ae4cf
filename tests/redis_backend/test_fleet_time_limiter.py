"""The time limiter on the fleet breakers: their forms are the shared ones,
so ``timeout=`` times out and records the timeout fleet-wide, sync (a
worker thread, abandoned) and asyncio (the task cancelled). The calls block
on a real event for a few milliseconds; the fleet's clock is manual."""

from __future__ import annotations

import asyncio
import threading

import pytest
import redis
import redis.asyncio
from fleet_breaker_support import FleetClock, fresh_fleet_name, make_breaker

from ratefuse import CallTimeout, CircuitOpenError
from ratefuse.breaker import BreakerConfig, State
from ratefuse.redis import AsyncFleetBreaker
from redis_servers import RedisServer

CONFIG = BreakerConfig(
    window_size=2, minimum_calls=2, failure_rate_threshold=50.0, wait_duration=10.0
)
SHORT = 0.02


def test_sync_fleet_timeouts_open_the_fleet(redis_node: RedisServer) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    breaker = make_breaker(client, fresh_fleet_name(), CONFIG, FleetClock())
    release = threading.Event()
    try:
        guarded = breaker.decorate(lambda: release.wait(30.0), timeout=SHORT)
        for _ in range(2):
            with pytest.raises(CallTimeout):
                guarded()
        breaker.flush()
        assert breaker.state == State.OPEN
        assert breaker.metrics().failed_calls == 2
        with pytest.raises(CircuitOpenError):
            breaker.call_with_timeout(SHORT, lambda: 1)
    finally:
        release.set()
        breaker.close()
        client.close()


def test_async_fleet_calls_are_cancelled_at_the_timeout(
    redis_node: RedisServer,
) -> None:
    cancelled: list[bool] = []

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        client = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        clock = FleetClock()
        breaker = AsyncFleetBreaker(
            fresh_fleet_name(),
            CONFIG,
            client=client,
            clock=clock,
            redis_clock=clock.server_us,
            background=False,
            timeout=5.0,
        )
        try:
            await breaker.start()
            guarded = breaker.decorate(stuck, timeout=SHORT)
            with pytest.raises(CallTimeout):
                await guarded()
            with pytest.raises(CallTimeout):
                await breaker.call_with_timeout(SHORT, stuck)
            await breaker.flush()
            assert breaker.state == State.OPEN
        finally:
            await breaker.aclose()
            await client.aclose()

    asyncio.run(main())
    assert cancelled == [True, True]
