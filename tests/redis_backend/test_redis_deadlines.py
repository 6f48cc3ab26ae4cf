"""Deadlines on the Redis-backed limiters (the real single node): acquire
drives the one wait planner, so a wait for the fleet's retry_after that
cannot fit the time left is refused at once, sync and asyncio; a spent
deadline refuses a round trip before any I/O (the node's breaker hears
nothing). And the "raise" policy's BackendError says when an open node
breaker asks Redis again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis
import redis.asyncio

from breaker_support import ManualClock, S
from ratefuse import (
    BackendError,
    DeadlineExceeded,
    Limiter,
    RateLimitExceeded,
    deadline,
)
from ratefuse.breaker import CircuitBreaker, State
from ratefuse.redis import DEFAULT_BREAKER_CONFIG, RedisBackend, RedisLimiter
from ratefuse.redis._backed import AsyncRedisKeyedLimiter
from redis_servers import RedisServer


def test_acquire_refuses_at_once_a_wait_past_the_deadline(
    client: redis.Redis, fresh_name: Callable[[], str]
) -> None:
    sleeps: list[float] = []
    limiter = Limiter("1/h", backend=client, name=fresh_name(), sleep=sleeps.append)
    try:
        limiter.acquire()
        with deadline(5.0), pytest.raises(DeadlineExceeded) as refused:
            limiter.acquire()
        assert sleeps == []
        assert refused.value.needed is not None
        assert 3590 < refused.value.needed <= 3600
        assert isinstance(refused.value.__cause__, RateLimitExceeded)
        # A timeout tighter than the deadline keeps its own error.
        with deadline(5.0), pytest.raises(RateLimitExceeded) as denied:
            limiter.acquire(timeout=1.0)
        assert not isinstance(denied.value, DeadlineExceeded)
    finally:
        limiter.close()


def test_a_spent_deadline_refuses_the_round_trip(
    client: redis.Redis, fresh_name: Callable[[], str]
) -> None:
    limiter = Limiter("10/s", backend=client, name=fresh_name())
    try:
        with deadline(0.0), pytest.raises(DeadlineExceeded) as refused:
            limiter.try_acquire()
        assert refused.value.what == "redis"
        stats = limiter.stats()
        assert (stats.backend_decisions, stats.fallbacks) == (0, 0)
        assert limiter.try_acquire()
    finally:
        limiter.close()


def test_async_acquire_is_bounded_by_the_deadline(
    redis_node: RedisServer, fresh_name: Callable[[], str]
) -> None:
    sleeps: list[float] = []

    async def record(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> None:
        client = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        limiter = AsyncRedisKeyedLimiter(
            "1/h", "gcra", backend=client, name=fresh_name(), async_sleep=record
        )
        try:
            await limiter.acquire_async("k")
            async with deadline(5.0):
                with pytest.raises(DeadlineExceeded):
                    await limiter.acquire_async("k")
                assert sleeps == []
            async with deadline(0.0):
                # "k" is denied from the deny cache, without I/O; another
                # key needs a round trip, which the spent deadline refuses.
                assert not (await limiter.decide("k")).allowed
                with pytest.raises(DeadlineExceeded):
                    await limiter.decide("other")
        finally:
            await limiter.aclose()
            await client.aclose()

    asyncio.run(main())


def test_redis_unavailable_says_when_the_open_breaker_asks_again(
    disposable_redis: RedisServer, fresh_name: Callable[[], str]
) -> None:
    # Under the "raise" policy, once the node's breaker opens, the
    # BackendError carries the breaker's wait as retry_after.
    client = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    breaker = CircuitBreaker("redis", DEFAULT_BREAKER_CONFIG, clock=ManualClock(S))
    backend = RedisBackend(client, timeout=0.05, breaker=breaker)
    limiter = RedisLimiter(
        "5/h", backend=backend, name=fresh_name(), on_backend_error="raise"
    )
    try:
        disposable_redis.kill()
        errors = []
        for _ in range(6):
            with pytest.raises(BackendError) as raised:
                limiter.decide("k")
            errors.append(raised.value)
        assert breaker.state is State.OPEN
        assert errors[0].retry_after is None  # a timeout says nothing
        wait = errors[-1].retry_after
        assert wait is not None
        assert 0 < wait <= DEFAULT_BREAKER_CONFIG.wait_duration
    finally:
        backend.close()
        client.close()


@pytest.mark.parametrize("calls", ["sequential", "batch"])
def test_a_read_is_cut_at_the_deadline_and_is_no_redis_failure(
    disposable_redis: RedisServer, fresh_name: Callable[[], str], calls: str
) -> None:
    # The backend waits up to 5 s for a reply; a paused Redis never sends
    # one. Under a deadline of 50 ms the read ends at the deadline with
    # DeadlineExceeded: the caller ran out of time, Redis did nothing
    # wrong, so the node's breaker records no failure and the failure
    # policy ("raise" here) is not asked. Once Redis answers again the
    # limiter decides as before.
    client = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    breaker = CircuitBreaker("redis", DEFAULT_BREAKER_CONFIG, clock=ManualClock(S))
    backend = RedisBackend(client, timeout=5.0, breaker=breaker)
    limiter = RedisLimiter(
        "5/h", backend=backend, name=fresh_name(), on_backend_error="raise"
    )
    try:
        assert limiter.decide("warm").allowed  # connected, library loaded
        decide: Callable[[], object] = (
            (lambda: limiter.decide("k"))
            if calls == "sequential"
            else (lambda: limiter.decide_many(["k", "j"]))
        )
        disposable_redis.pause()
        try:
            with deadline(0.05), pytest.raises(DeadlineExceeded) as cut:
                decide()
        finally:
            disposable_redis.resume()
        assert cut.value.what == "redis"
        assert isinstance(cut.value.__cause__, TimeoutError)
        metrics = breaker.metrics()
        assert (metrics.failed_calls, breaker.state) == (0, State.CLOSED)
        assert limiter.decide("k").allowed
    finally:
        backend.close()
        client.close()


def test_an_async_read_is_cut_at_the_deadline(
    disposable_redis: RedisServer, fresh_name: Callable[[], str]
) -> None:
    async def main() -> None:
        client = redis.asyncio.Redis(host="127.0.0.1", port=disposable_redis.port)
        limiter = AsyncRedisKeyedLimiter(
            "5/h", "gcra", backend=client, name=fresh_name(), on_backend_error="raise"
        )
        try:
            assert (await limiter.decide("warm")).allowed
            disposable_redis.pause()
            try:
                async with deadline(0.05):
                    with pytest.raises(DeadlineExceeded) as cut:
                        await limiter.decide("k")
            finally:
                disposable_redis.resume()
            assert cut.value.what == "redis"
            assert (await limiter.decide("k")).allowed
        finally:
            await limiter.aclose()
            await client.aclose()

    asyncio.run(main())
