"""The sequential decision's short path, sync and asyncio: one call to
the single node, already contacted, packed and settled without a Call or
an Exchange when the reply is a verdict; a reload, a deadline and a
stopped server go on as the Exchange says, on a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio
from script_path_support import SCRIPT_PATHS, force_path

from ratefuse.core.errors import BackendError, DeadlineExceeded
from ratefuse.engine.deadline import deadline
from ratefuse.redis import (
    AsyncRedisBackend,
    AsyncRedisLimiter,
    RedisBackend,
    RedisLimiter,
    _async,
    _exchange,
    _sync,
)
from ratefuse.redis._script_paths import ScriptPath


@pytest.fixture
def calls_made(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """`calls_made` lists every Call and Exchange the backends make."""
    made: list[object] = []

    def counted(kind: Any) -> Any:
        def make(*args: Any, **kwargs: Any) -> Any:
            made.append(kind)
            return kind(*args, **kwargs)

        return make

    for module in (_sync, _async):
        monkeypatch.setattr(module, "Exchange", counted(_exchange.Exchange))
    monkeypatch.setattr(_exchange, "Call", counted(_exchange.Call))
    return made


@pytest.mark.parametrize("path", SCRIPT_PATHS, ids=[p.name for p in SCRIPT_PATHS])
def test_each_decision_is_one_round_trip_without_a_call_or_exchange(
    client, fresh_name, path: ScriptPath, calls_made: list[object]
) -> None:
    with RedisBackend(client, timeout=5.0) as backend:
        force_path(backend, path)
        limiter = RedisLimiter("5/h", backend=backend, name=fresh_name())
        limiter.decide("first")  # the first contact
        before, made = backend.stats(), len(calls_made)
        remaining = [limiter.decide(f"k{index % 2}").remaining for index in range(6)]
        # Denials, then the deny cache's answer without a round trip.
        allowed = [limiter.try_acquire("k0") for _ in range(3)]
        after = backend.stats()
        assert backend.breaker.metrics().failed_calls == 0
    assert remaining == [4, 4, 3, 3, 2, 2]
    assert allowed == [True, True, False]
    assert (after.round_trips - before.round_trips, after.calls - before.calls) == (
        9,
        9,
    )
    assert calls_made[made:] == []


@pytest.mark.parametrize("path", SCRIPT_PATHS, ids=[p.name for p in SCRIPT_PATHS])
def test_each_async_decision_is_one_round_trip_and_one_call(
    redis_node, fresh_name, path: ScriptPath, calls_made: list[object]
) -> None:
    async def run() -> tuple[list[int], list[bool], tuple[int, int]]:
        client = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        async with AsyncRedisBackend(client, timeout=5.0) as backend:
            force_path(backend, path)
            limiter = AsyncRedisLimiter(
                "5/h", backend=backend, name=fresh_name(), deny_cache=False
            )
            await limiter.decide("first")  # the first contact
            before, made = backend.stats(), len(calls_made)
            remaining = [
                (await limiter.decide(f"k{index % 2}")).remaining for index in range(6)
            ]
            allowed = [await limiter.try_acquire("k0") for _ in range(3)]
            after = backend.stats()
            assert backend.breaker.metrics().failed_calls == 0
            assert calls_made[made:] == []
        await client.aclose()
        return (
            remaining,
            allowed,
            (after.round_trips - before.round_trips, after.calls - before.calls),
        )

    remaining, allowed, sent = asyncio.run(run())
    assert remaining == [4, 4, 3, 3, 2, 2]
    assert allowed == [True, True, False]
    assert sent == (9, 9)


def test_a_flushed_library_is_reloaded_on_the_async_short_path(
    redis_node, client, fresh_name
) -> None:
    async def run() -> tuple[bool, int, int]:
        connection = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        async with AsyncRedisBackend(connection, timeout=5.0) as backend:
            limiter = AsyncRedisLimiter("5/h", backend=backend, name=fresh_name())
            await limiter.decide("contact")
            client.function_flush()
            client.script_flush()
            allowed = (await limiter.decide("again")).allowed
            stats = backend.stats()
            fallbacks = limiter.stats().fallbacks
        await connection.aclose()
        return allowed, stats.function_loads + stats.noscript_reloads, fallbacks

    assert asyncio.run(run()) == (True, 1, 0)


def test_a_spent_deadline_refuses_the_async_short_path(redis_node, fresh_name) -> None:
    async def run() -> int:
        connection = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        async with AsyncRedisBackend(connection, timeout=5.0) as backend:
            store = AsyncRedisLimiter("5/h", backend=backend, name=fresh_name())._store
            await store.decide_raw("contact")
            before = backend.stats().calls
            with pytest.raises(DeadlineExceeded), deadline(0.0):
                await store.decide_raw("late")
            calls = backend.stats().calls - before
            assert backend.breaker.metrics().failed_calls == 0
        await connection.aclose()
        return calls

    assert asyncio.run(run()) == 0


def test_a_stopped_server_fails_the_async_short_path_as_a_transport_error(
    disposable_redis,
) -> None:
    async def run() -> None:
        connection = redis.asyncio.Redis(host="127.0.0.1", port=disposable_redis.port)
        async with AsyncRedisBackend(connection, timeout=1.0) as backend:
            limiter = AsyncRedisLimiter(
                "5/h", backend=backend, name="stopped", on_backend_error="raise"
            )
            assert (await limiter.decide("k")).allowed
            disposable_redis.stop()
            with pytest.raises(BackendError):
                await limiter.decide("k")
            assert backend.stats().transport_errors == 1
            assert backend.breaker.metrics().failed_calls == 1
        await connection.aclose()

    asyncio.run(run())
