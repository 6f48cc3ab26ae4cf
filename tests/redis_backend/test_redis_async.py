"""The asyncio twin: the same calls and decisions as the sync backend (both
drive one sans-I/O exchange), on a single Redis and on the cluster, and
the same failure handling: policy, breaker, recovery, cancellation."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
import redis.asyncio

from ratefuse.breaker import CircuitBreaker, State
from ratefuse.core.spec import LimitSpec
from ratefuse.rates import build_specs, parse
from ratefuse.redis import (
    DEFAULT_BREAKER_CONFIG,
    AsyncRedisBackend,
    AsyncRedisLimiter,
    RedisBackend,
)

BASE_US = 4_000_000_000_000_000
TRACE = [(0, 1), (0, 2), (10, 1), (700_000, 3), (0, 0), (2_000_000, 9), (1, 4), (0, 50)]
SUBJECTS = ["a", b"a", 1, "b", "a", "{x}"]


def specs_for(algorithm: str) -> list[LimitSpec]:
    return list(build_specs(parse("5/s; 20/10s"), algorithm))


@pytest.mark.parametrize(
    "algorithm", ["gcra", "fixed_window", "sliding_window", "sliding_log"]
)
@pytest.mark.parametrize("where", ["node", "cluster"])
def test_async_decides_as_sync(
    redis_node, redis_cluster, fresh_name, algorithm: str, where: str
) -> None:
    port = redis_node.port if where == "node" else redis_cluster.ports[0]
    sync_client: redis.Redis = (
        redis.Redis(port=port)
        if where == "node"
        else redis.RedisCluster(host="127.0.0.1", port=port)
    )
    backend = RedisBackend(sync_client)
    store = backend.bind(specs_for(algorithm), fresh_name())
    expected, now = [], BASE_US
    for step, cost in TRACE:
        now += step
        expected.append(store.decide_us("k", cost, now_us=now))
        expected.extend(
            store.decide_many_us(SUBJECTS, [cost] * len(SUBJECTS), now_us=now)
        )
    backend.close()
    sync_client.close()

    async def run() -> list[object]:
        client = (
            redis.asyncio.Redis(host="127.0.0.1", port=port)
            if where == "node"
            else redis.asyncio.RedisCluster(host="127.0.0.1", port=port)
        )
        async with AsyncRedisBackend(client) as backend:
            store = backend.bind(specs_for(algorithm), fresh_name())
            got, now = [], BASE_US
            for step, cost in TRACE:
                now += step
                got.append(await store.decide_us("k", cost, now_us=now))
                got.extend(
                    await store.decide_many_us(
                        SUBJECTS, [cost] * len(SUBJECTS), now_us=now
                    )
                )
        await client.aclose()
        return got

    assert asyncio.run(run()) == expected


def test_async_limiter_verbs(redis_node, fresh_name) -> None:
    async def run() -> None:
        client = redis.asyncio.Redis(port=redis_node.port)
        async with AsyncRedisLimiter(
            "3/h", backend=client, name=fresh_name()
        ) as limiter:
            assert [await limiter.try_acquire("k") for _ in range(4)] == [True] * 3 + [
                False
            ]
            decisions = await limiter.decide_many_decisions(["k", "j", "j"], [0, 2, 2])
            assert [d.allowed for d in decisions] == [True, True, False]
            await limiter.reset("k")
            assert (await limiter.decide("k", 0)).remaining == 3
            assert limiter.stats().fallbacks == 0
            assert limiter.stats().backend_decisions == 8
        await client.aclose()

    asyncio.run(run())


def test_async_failures_and_recovery(disposable_redis) -> None:
    clock_ns = [1_000_000_000]

    async def run() -> None:
        client = redis.asyncio.Redis(port=disposable_redis.port)
        breaker = CircuitBreaker(
            "redis", DEFAULT_BREAKER_CONFIG, clock=lambda: clock_ns[0]
        )
        backend = AsyncRedisBackend(client, timeout=0.2, breaker=breaker)
        limiter = AsyncRedisLimiter(
            "5/h", backend=backend, name="async", local_share=0.4
        )
        assert (await limiter.decide("k")).remaining == 4
        # Paused: one timeout, answered locally.
        disposable_redis.pause()
        try:
            started = time.perf_counter()
            decision = await limiter.decide("k")
            elapsed = time.perf_counter() - started
            assert 0.18 <= elapsed < 0.7, (elapsed, backend.stats())
            assert decision.limit == 2, (decision, limiter.stats())
            # Cancelled mid-call: the connection is dropped, nothing leaks.
            task = asyncio.ensure_future(limiter.decide("k"))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            disposable_redis.resume()
        decision = await limiter.decide("k")
        assert decision.limit == 5, (decision, limiter.stats(), backend.stats())
        assert decision.remaining <= 3, decision
        # Killed: fallbacks until the breaker opens, then no I/O.
        disposable_redis.kill()
        for _ in range(6):
            assert (await limiter.decide("k")).limit == 2
        assert breaker.state is State.OPEN, (limiter.stats(), backend.stats())
        assert limiter.stats().breaker_fallbacks >= 1
        disposable_redis.start()
        clock_ns[0] += round(DEFAULT_BREAKER_CONFIG.wait_duration * 1e9)
        decision = await limiter.decide("k")
        # Redis, restarted empty.
        assert (decision.limit, decision.remaining) == (5, 4), (
            decision,
            backend.stats(),
        )
        assert breaker.state is State.CLOSED
        await backend.aclose()
        await client.aclose()

    asyncio.run(run())
