"""The public constructors with a backend: ``KeyedLimiter(..., backend=...)``
and ``Limiter(..., backend=...)`` keep their state in Redis (real servers:
the session's single node and cluster, or a disposable node to kill), sync
and asyncio; a ShmBackend gives the shared-memory limiters; options a
backend cannot honour are ValueErrors naming the field.

Waiting is tested without waiting: the injected sleep frees the quota
(resets the subject), so the next attempt is admitted at once, and the
sleeps asked for are the retry_after Redis reported.
"""

from __future__ import annotations

import asyncio
import math

import pytest
import redis
import redis.asyncio

from ratefuse import KeyedLimiter, Limiter, RateLimitExceeded
from ratefuse.protocols import (
    AsyncKeyedRateLimiter,
    AsyncRateLimiter,
    KeyedRateLimiter,
    LimiterBackend,
    RateLimiter,
    is_async,
    is_keyed,
)
from ratefuse.redis import AsyncRedisBackend, RedisBackend, RedisLimiter
from ratefuse.shm import ShmBackend, ShmKeyedLimiter, ShmLimiter


def test_keyed_limiter_on_redis_shares_the_named_quota(client, fresh_name) -> None:
    name = fresh_name()
    first = KeyedLimiter("3/h", backend=client, name=name)
    second = KeyedLimiter("3/h", backend=RedisBackend(client), name=name)
    assert not isinstance(first, KeyedLimiter)
    assert isinstance(first, KeyedRateLimiter)
    assert [first.try_acquire("user") for _ in range(2)] == [True, True]
    decision = second.decide("user")
    assert decision.allowed
    assert decision.remaining == 0
    denied = first.decide("user")
    assert not denied.allowed
    assert 1199 < denied.retry_after <= 1200
    # Other keys, and the same key under another name, are untouched.
    assert second.decide("other").remaining == 2
    with RedisLimiter("3/h", backend=client, name=fresh_name()) as third:
        assert third.decide("user").remaining == 2
    decisions = first.decide_many_decisions(["user", "other", "new"], [0, 1, 3])
    assert [d.remaining for d in decisions] == [0, 1, 0]
    assert [d.allowed for d in decisions] == [True, True, True]
    first.reset("user")
    assert second.decide("user", 0).remaining == 3
    assert first.stats().fallbacks == 0
    first.close()
    second.close()
    second.backend.close()


def test_keyed_limiter_on_a_cluster_decides_compound_limits(
    cluster_client, fresh_name
) -> None:
    with KeyedLimiter(
        "2/h; 3/d", "fixed_window", backend=cluster_client, name=fresh_name()
    ) as limiter:
        assert [limiter.try_acquire(key) for key in ("a", "b", "a")] == [True] * 3
        denied = limiter.decide("a")
        assert not denied.allowed
        assert denied.limit == 2
        assert [d.allowed for d in limiter.decide_many_decisions(["b", "c", "b"])] == [
            True,
            True,
            False,
        ]
        assert limiter.stats().fallbacks == 0


def test_limiter_on_redis_is_one_shared_subject(client, fresh_name) -> None:
    name = fresh_name()
    with (
        Limiter("2/h; 5/d", backend=client, name=name) as first,
        Limiter("2/h; 5/d", backend=client, name=name) as second,
    ):
        assert first.try_acquire()
        decision = second.decide()
        assert decision.allowed
        assert decision.remaining == 0
        assert not first.try_acquire()
        with pytest.raises(RateLimitExceeded) as raised:
            second.admit_or_raise()
        assert raised.value.decision.limit == 2
        first.reset()
        assert second.decide(0).remaining == 2
        assert "'2/3600s; 5/86400s'" in repr(first)
        assert first.name == name
        assert first.stats().fallbacks == 0


def test_acquire_sleeps_the_reported_retry_after_then_decides_again(
    client, fresh_name
) -> None:
    sleeps: list[float] = []
    limiter = Limiter(
        "1/h",
        backend=client,
        name=fresh_name(),
        sleep=lambda seconds: (sleeps.append(seconds), limiter.reset()),
    )
    limiter.acquire()  # admitted at once: no sleep
    assert sleeps == []
    limiter.acquire(timeout=None)  # denied, sleeps, reset by the sleep
    assert len(sleeps) == 1
    assert 3599 < sleeps[0] <= 3600
    assert not limiter.try_acquire()
    limiter.close()


def test_acquire_raises_at_once_past_the_timeout_or_the_capacity(
    client, fresh_name
) -> None:
    sleeps: list[float] = []
    keyed = KeyedLimiter(
        "2/h", backend=client, name=fresh_name(), sleep=sleeps.append, max_wait=60
    )
    keyed.acquire("k", 2)
    with pytest.raises(RateLimitExceeded) as raised:
        keyed.acquire("k", 1, timeout=10)
    assert 1799 < raised.value.decision.retry_after <= 1800
    with pytest.raises(RateLimitExceeded):
        keyed.acquire("k", 1)  # max_wait bounds it too
    with pytest.raises(RateLimitExceeded) as never:
        keyed.acquire("other", 3, timeout=None)
    assert never.value.decision.retry_after == math.inf
    with pytest.raises(ValueError, match="timeout"):
        keyed.acquire("k", 1, timeout=-1)
    assert sleeps == []
    keyed.close()


def test_acquire_async_on_a_sync_backend_sleeps_with_asyncio(
    client, fresh_name
) -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        limiter.reset()

    limiter = Limiter("1/h", backend=client, name=fresh_name(), async_sleep=sleep)

    async def run() -> None:
        await limiter.acquire_async()
        await limiter.acquire_async()
        with pytest.raises(RateLimitExceeded):
            await limiter.acquire_async(timeout=5.0)

    asyncio.run(run())
    assert len(sleeps) == 1
    assert 3599 < sleeps[0] <= 3600
    limiter.close()


def test_keyed_forms_wait_through_redis(client, fresh_name) -> None:
    keyed = KeyedLimiter(
        "1/h",
        backend=client,
        name=fresh_name(),
        sleep=lambda seconds: keyed.reset("user"),
    )

    @keyed.limit(lambda user: user)
    def handle(user: str) -> str:
        return user

    assert [handle("user"), handle("user")] == ["user", "user"]
    with keyed.acquiring("other"):
        pass
    assert not keyed.try_acquire("other")
    keyed.close()


def test_on_backend_error_answers_when_redis_is_gone(
    disposable_redis, fresh_name
) -> None:
    connection = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    limiter = KeyedLimiter(
        "5/s", backend=connection, name=fresh_name(), on_backend_error="deny"
    )
    assert limiter.try_acquire("k")
    disposable_redis.kill()
    decision = limiter.decide("k")
    assert not decision.allowed
    stats = limiter.stats()
    assert (stats.deny_fallbacks, stats.fallbacks) == (1, 1)
    limiter.close()
    connection.close()


def test_async_keyed_limiter_on_redis(redis_node, fresh_name) -> None:
    async def run() -> None:
        connection = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        sleeps: list[float] = []

        async def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            await limiter.reset("k")

        limiter = KeyedLimiter(
            "2/h", backend=connection, name=fresh_name(), async_sleep=sleep
        )
        assert await limiter.try_acquire("k")
        assert (await limiter.decide("k")).remaining == 0
        decisions = await limiter.decide_many_decisions(["k", "j"])
        assert [d.allowed for d in decisions] == [False, True]
        await limiter.acquire_async("k")
        assert len(sleeps) == 1
        assert 1799 < sleeps[0] <= 1800
        with pytest.raises(RateLimitExceeded):
            await limiter.acquire_async("j", 2, timeout=1.0)
        await limiter.aclose()
        await connection.aclose()

    asyncio.run(run())


def test_async_limiter_on_redis(redis_node, fresh_name) -> None:
    async def run() -> None:
        connection = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        backend = AsyncRedisBackend(connection)
        name = fresh_name()
        async with Limiter("1/h", backend=backend, name=name) as first:
            # The sleep resets through the waiting limiter itself: a reset
            # through another would leave this one's deny cache in place.
            second = Limiter(
                "1/h", backend=backend, name=name, async_sleep=lambda s: second.reset()
            )
            assert await first.try_acquire()
            assert not (await second.decide()).allowed
            await second.acquire_async()  # the sleep resets the subject
            assert not await first.try_acquire()
            assert second.stats().fallbacks == 0
        await backend.aclose()
        await connection.aclose()

    asyncio.run(run())


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"algorithm": "leaky_bucket"}, "algorithm"),
        ({"name": None}, "name"),
        ({"max_keys": 10}, "max_keys"),
        ({"on_backend_error": "explode"}, "on_backend_error"),
        ({"local_share": 2.0}, "local_share"),
        ({"max_wait": -1.0}, "max_wait"),
    ],
)
def test_options_a_redis_backend_cannot_honour(
    client, arguments: dict[str, object], field: str
) -> None:
    options: dict[str, object] = {"name": "bad-options", **arguments}
    with pytest.raises(ValueError, match=field):
        KeyedLimiter("5/s", backend=client, **options)  # type: ignore[arg-type]
    if field != "max_keys":
        with pytest.raises(ValueError, match=field):
            Limiter("5/s", backend=client, **options)  # type: ignore[arg-type]


def test_bad_backends_and_backend_options_without_one(redis_node) -> None:
    with pytest.raises(TypeError, match="backend must be"):
        KeyedLimiter("5/s", backend="redis://127.0.0.1")
    with pytest.raises(TypeError, match="backend must be"):
        Limiter("5/s", backend=42)
    # Without a backend, a backend's options are a TypeError naming them:
    # the in-memory constructors do not take them.
    with pytest.raises(TypeError, match="name"):
        KeyedLimiter("5/s", name="orphan")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="on_backend_error"):
        Limiter("5/s", on_backend_error="deny")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="lease"):
        KeyedLimiter("5/s", lease=True)

    async def run() -> None:
        connection = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        with pytest.raises(ValueError, match="sleep"):
            KeyedLimiter("5/s", backend=connection, name="x", sleep=lambda s: None)
        await connection.aclose()

    asyncio.run(run())


def test_shm_backend_gives_the_shared_memory_limiters(tmp_path) -> None:
    backend = ShmBackend(tmp_path / "table", max_keys=64)
    with KeyedLimiter("2/h", backend=backend) as keyed:
        assert isinstance(keyed, ShmKeyedLimiter)
        assert [keyed.try_acquire("k") for _ in range(3)] == [True, True, False]
    with pytest.raises(ValueError, match="name"):
        KeyedLimiter("2/h", backend=backend, name="x")
    with pytest.raises(ValueError, match="max_keys"):
        KeyedLimiter("2/h", backend=backend, max_keys=10)
    single = ShmBackend(tmp_path / "single")
    with Limiter("1/h", backend=single) as limiter:
        assert isinstance(limiter, ShmLimiter)
        assert limiter.try_acquire()
        assert not limiter.try_acquire()


def test_no_backend_is_the_in_memory_limiter() -> None:
    keyed = KeyedLimiter("1/h", backend=None, max_keys=8)
    assert isinstance(keyed, KeyedLimiter)
    assert keyed.try_acquire("k", now=0)
    assert not keyed.try_acquire("k", now=1)
    limiter = Limiter("1/h", backend=None)
    assert isinstance(limiter, Limiter)
    assert limiter.try_acquire(now=0)


def test_the_readme_example(redis_node, fresh_name) -> None:
    # README "Fleet-wide limits in Redis", with the fixture's server and a
    # fresh name for each quota.
    client = redis.Redis(port=redis_node.port)
    per_user = KeyedLimiter("10/s; 1000/h", backend=client, name=fresh_name())
    if per_user.try_acquire("alice"):  # shared by every process named "api"
        pass
    decisions = per_user.decide_many_decisions(
        ["alice", "bob", "alice"], costs=[1, 2, 1]
    )
    assert [d.remaining for d in decisions] == [8, 8, 7]

    partner = Limiter(
        "50/s", backend=client, name=fresh_name(), on_backend_error="deny"
    )
    partner.acquire(timeout=2.0)  # sleeps the retry_after Redis reports
    assert partner.decide(0).remaining == 49

    async def handler() -> bool:
        per_user = KeyedLimiter(
            "10/s", backend=redis.asyncio.Redis(port=redis_node.port), name="api"
        )
        allowed = await per_user.try_acquire("alice")
        await per_user.aclose()
        return allowed

    assert asyncio.run(handler())
    client.close()


def test_every_redis_limiter_is_recognised_by_its_kind(redis_node, fresh_name) -> None:
    client = redis.Redis(port=redis_node.port)
    backend = RedisBackend(client)
    assert isinstance(backend, LimiterBackend)
    limiters = [
        (Limiter("5/s", backend=client, name=fresh_name()), False),
        (KeyedLimiter("5/s", backend=backend, name=fresh_name()), True),
        (RedisLimiter("5/s", backend=client, name=fresh_name()), True),
        (RedisLimiter("5/s", backend=backend, name=fresh_name(), lease=True), True),
    ]
    for limiter, keyed in limiters:
        assert isinstance(limiter, RateLimiter)
        assert is_keyed(limiter) is keyed
        assert isinstance(limiter, KeyedRateLimiter) is keyed
        assert not is_async(limiter)
        limiter.close()
    backend.close()
    client.close()

    async def run() -> None:
        connection = redis.asyncio.Redis(port=redis_node.port)
        subject = Limiter("5/s", backend=connection, name=fresh_name())
        keyed = KeyedLimiter("5/s", backend=connection, name=fresh_name())
        assert isinstance(AsyncRedisBackend(connection), LimiterBackend)
        assert isinstance(subject, AsyncRateLimiter)
        assert not is_keyed(subject)
        assert isinstance(keyed, AsyncKeyedRateLimiter)
        assert is_keyed(keyed)
        assert is_async(subject)
        assert is_async(keyed)
        assert await subject.try_acquire()
        await subject.aclose()
        await keyed.aclose()
        await connection.aclose()

    asyncio.run(run())
