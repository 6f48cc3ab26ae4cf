"""AsyncFleetBreaker on the real single node and cluster: the same fleet
decisions as the sync breaker (they share one sans-I/O base and one
script), awaited; a sync and an async breaker of one name share one fleet;
Redis lost and back; the asyncio forms."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
import redis.asyncio
from fleet_breaker_support import FleetClock, fresh_fleet_name, make_breaker

from ratefuse import CircuitOpenError
from ratefuse.breaker import BreakerConfig, State
from ratefuse.redis import AsyncFleetBreaker
from redis_servers import RedisServer, free_port

CONFIG = BreakerConfig(
    window_size=10,
    minimum_calls=4,
    failure_rate_threshold=50.0,
    wait_duration=10.0,
    half_open_calls=2,
)


def async_client(where: str, request: pytest.FixtureRequest) -> Any:
    if where == "node":
        port = request.getfixturevalue("redis_node").port
        return redis.asyncio.Redis(host="127.0.0.1", port=port)
    port = request.getfixturevalue("redis_cluster").ports[0]
    return redis.asyncio.RedisCluster(host="127.0.0.1", port=port)


def build(
    client: Any, name: str, clock: FleetClock, **options: Any
) -> AsyncFleetBreaker:
    options.setdefault("background", False)
    options.setdefault("timeout", 5.0)
    return AsyncFleetBreaker(
        name, CONFIG, client=client, clock=clock, redis_clock=clock.server_us, **options
    )


async def fail(breaker: AsyncFleetBreaker, times: int) -> None:
    for _ in range(times):
        permit = await breaker.try_acquire()
        assert permit is not None
        permit.on_error(0.0, RuntimeError("down"))


def run_with_fleet(
    request: pytest.FixtureRequest,
    where: str,
    count: int,
    body: Callable[[list[AsyncFleetBreaker], FleetClock], Awaitable[None]],
) -> None:
    async def main() -> None:
        clock = FleetClock()
        name = fresh_fleet_name()
        clients = [async_client(where, request) for _ in range(count)]
        breakers = [build(client, name, clock) for client in clients]
        try:
            for breaker in breakers:
                await breaker.start()
            await body(breakers, clock)
        finally:
            for breaker in breakers:
                await breaker.aclose()
            for client in clients:
                await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize("where", ["node", "cluster"])
def test_async_fleet_trips_together_and_shares_the_probes(
    request: pytest.FixtureRequest, where: str
) -> None:
    async def body(breakers: list[AsyncFleetBreaker], clock: FleetClock) -> None:
        for breaker in breakers:
            await fail(breaker, 2)
            await breaker.flush()
        for breaker in breakers:
            await breaker.flush()
        assert [breaker.state for breaker in breakers] == [State.OPEN] * 3
        assert [await breaker.try_acquire() for breaker in breakers] == [None] * 3
        clock.advance(10.0)
        granted = [await breaker.try_acquire() for breaker in breakers * 2]
        assert sum(permit is not None for permit in granted) == 2
        for permit in granted:
            if permit is not None:
                permit.on_success(0.0)
        for breaker in breakers * 2:
            await breaker.flush()
        assert [breaker.state for breaker in breakers] == [State.CLOSED] * 3

    run_with_fleet(request, where, 3, body)


def test_async_forms(request: pytest.FixtureRequest) -> None:
    async def body(breakers: list[AsyncFleetBreaker], clock: FleetClock) -> None:
        breaker = breakers[0]
        seen: list[tuple[State, State]] = []
        breaker.add_listener(lambda _, old, new: seen.append((old, new)))

        @breaker
        async def flaky() -> str:
            raise RuntimeError("down")

        for _ in range(2):
            with pytest.raises(RuntimeError):
                await flaky()
        with pytest.raises(RuntimeError):
            async with breaker.guard():
                raise RuntimeError("down")

        async def answer(value: int) -> int:
            return value

        assert await breaker.call(answer, 5) == 5
        await breaker.flush()
        assert breaker.state == State.OPEN
        assert seen == [(State.CLOSED, State.OPEN)]
        with pytest.raises(CircuitOpenError):
            await flaky()
        with pytest.raises(CircuitOpenError):
            async with breaker.guard():
                pass

        async def cached() -> str:
            return "cached"

        guarded = breaker.decorate(flaky, fallback=cached)
        assert await guarded() == "cached"
        with pytest.raises(TypeError, match="coroutine"):
            breaker.decorate(lambda: None)  # type: ignore[arg-type]

    run_with_fleet(request, "node", 1, body)


def test_sync_and_async_breakers_share_one_fleet(
    request: pytest.FixtureRequest, redis_node: RedisServer
) -> None:
    clock = FleetClock()
    name = fresh_fleet_name()
    sync_client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    sync_breaker = make_breaker(sync_client, name, CONFIG, clock)

    async def main() -> None:
        client = async_client("node", request)
        try:
            async with build(client, name, clock) as breaker:
                await fail(breaker, 4)
                await breaker.flush()
                sync_breaker.flush()
                assert sync_breaker.state == State.OPEN
                await sync_breaker_reset()
                await breaker.flush()
                assert breaker.state == State.CLOSED
        finally:
            await client.aclose()

    async def sync_breaker_reset() -> None:
        sync_breaker.reset()

    try:
        asyncio.run(main())
    finally:
        sync_breaker.close()
        sync_client.close()


def test_async_redis_lost_and_back(disposable_redis: RedisServer) -> None:
    async def main() -> None:
        clock = FleetClock()
        client = redis.asyncio.Redis(host="127.0.0.1", port=disposable_redis.port)
        try:
            async with build(client, fresh_fleet_name(), clock, timeout=0.2) as breaker:
                await fail(breaker, 1)
                disposable_redis.kill()
                await breaker.flush()
                assert breaker.fallen_back
                await fail(breaker, 4)  # the local breaker decides
                assert breaker.state == State.OPEN
                assert await breaker.try_acquire() is None
                disposable_redis.start()
                await breaker.flush()
                assert not breaker.fallen_back
                assert breaker.state == State.CLOSED
                stats = breaker.stats()
                assert (stats.fallbacks, stats.recoveries) == (1, 1)
        finally:
            await client.aclose()

    asyncio.run(main())


def test_async_background_task_flushes_and_an_unreachable_redis_falls_back(
    redis_node: RedisServer,
) -> None:
    async def main() -> None:
        dead = redis.asyncio.Redis(host="127.0.0.1", port=free_port())
        live = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        try:
            async with AsyncFleetBreaker(
                fresh_fleet_name(), CONFIG, client=dead, timeout=0.2
            ) as lost:
                assert lost.fallen_back
                assert await lost.try_acquire() is not None
            async with AsyncFleetBreaker(
                fresh_fleet_name(), CONFIG, client=live, batch_size=2, timeout=5.0
            ) as breaker:
                await fail(breaker, 4)
                # The batch woke the flusher task; wait for it (I/O), bounded.
                for _ in range(5000):
                    if breaker.state == State.OPEN:
                        break
                    await asyncio.sleep(0.001)
                assert breaker.state == State.OPEN
                assert breaker.stats().outcomes_flushed == 4
        finally:
            await dead.aclose()
            await live.aclose()

    asyncio.run(main())


def test_async_bad_client_is_a_type_error(redis_node: RedisServer) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    try:
        with pytest.raises(TypeError, match=r"redis\.asyncio"):
            AsyncFleetBreaker("bad", client=client)  # type: ignore[arg-type]
    finally:
        client.close()


def test_concurrent_first_calls_wait_for_the_fleet_state(
    redis_node: RedisServer,
) -> None:
    # Tasks that race the first (implicit) start used to get the CLOSED
    # permit of generation 0 before the fleet state was read: calls let
    # through a breaker the fleet holds open.
    async def main() -> list[Any]:
        client = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        name = fresh_fleet_name()
        try:
            async with AsyncFleetBreaker(
                name, CONFIG, client=client, background=False
            ) as first:
                await first.force_open()
            late = AsyncFleetBreaker(name, CONFIG, client=client, background=False)
            try:
                return list(
                    await asyncio.gather(*(late.try_acquire() for _ in range(5)))
                )
            finally:
                await late.aclose()
        finally:
            await client.aclose()

    assert asyncio.run(main()) == [None] * 5


def test_an_async_generator_holds_a_fleet_permit_through_iteration(
    request: pytest.FixtureRequest,
) -> None:
    # Issue 21 item 6 on an asyncio fleet breaker: failures during the
    # iteration count, nothing is recorded at creation.
    async def body(breakers: list[AsyncFleetBreaker], clock: FleetClock) -> None:
        breaker = breakers[0]

        @breaker
        async def pages() -> Any:
            yield 1
            raise RuntimeError("down")

        unstarted = pages()
        await breaker.flush()
        assert breaker.metrics().calls == 0  # nothing recorded at creation
        for iterator in [unstarted, pages(), pages(), pages()]:
            with pytest.raises(RuntimeError):
                async for _ in iterator:
                    pass
        await breaker.flush()
        assert breaker.state == State.OPEN
        with pytest.raises(CircuitOpenError):
            async for _ in pages():
                pass

    run_with_fleet(request, "node", 1, body)
