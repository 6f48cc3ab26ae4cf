"""A breaker per Redis node, and a default fallback that never multiplies the
quota (issue 21, item 11). On a real 3-primary cluster with one primary
paused (SIGSTOP), only that node's breaker opens: the keys of the healthy
nodes are still decided by Redis, sync and asyncio, and the paused node's
keys get the policy's answer without I/O. The breakers' clock is injected:
no test waits for a breaker's wait to pass."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from redis.crc import key_slot

from breaker_support import ManualClock, breaker_class
from ratefuse.breaker import CircuitBreaker, State
from ratefuse.core.backend_defaults import DEFAULT_ON_BACKEND_ERROR
from ratefuse.redis import (
    DEFAULT_BREAKER_CONFIG,
    AsyncRedisBackend,
    AsyncRedisLimiter,
    FailurePolicy,
    RedisBackend,
    RedisLimiter,
)
from ratefuse.redis._policy import failure_policy

TIMEOUT = 0.2
KEYS = [f"user-{index}" for index in range(60)]


def split_keys(backend, limiter, port: int) -> tuple[list[str], list[str]]:
    # The keys whose slot the node on ``port`` serves, and the others.
    slots = backend._slots
    assert slots is not None
    mine = [
        key
        for key in KEYS
        if slots.node(key_slot(limiter._schema.key(key))) == ("127.0.0.1", port)
    ]
    assert 0 < len(mine) < len(KEYS)
    return mine, [key for key in KEYS if key not in mine]


@pytest.fixture
def paused_port(redis_cluster) -> Iterator[int]:
    # Node 0's port; the test pauses it and this resumes it at any exit.
    node = redis_cluster.nodes[0]
    yield node.port
    node.resume()


def test_a_paused_node_opens_only_its_own_breaker(
    impl, redis_cluster, cluster_client, fresh_name, paused_port
) -> None:
    clock = ManualClock(1_000_000_000)
    template = breaker_class(impl)("redis", DEFAULT_BREAKER_CONFIG, clock=clock)
    backend = RedisBackend(cluster_client, timeout=TIMEOUT, breaker=template)
    limiter = RedisLimiter(
        "5/h", backend=backend, name=fresh_name(), on_backend_error="allow"
    )
    try:
        assert all(d.remaining == 4 for d in limiter.decide_many_decisions(KEYS))
        dead, alive = split_keys(backend, limiter, paused_port)
        redis_cluster.nodes[0].pause()
        for _ in range(DEFAULT_BREAKER_CONFIG.minimum_calls):
            limiter.decide_many_decisions(KEYS)
        breakers = backend.node_breakers()
        assert len(breakers) == 3
        states = {name: breaker.state for name, breaker in breakers.items()}
        assert states.pop(f"127.0.0.1:{paused_port}") is State.OPEN
        assert set(states.values()) == {State.CLOSED}
        assert template.state is State.CLOSED  # it only gives the rules
        timeouts = backend.stats().timeouts
        before = limiter.stats()
        # One decision at a time, as a web app makes them: the healthy
        # nodes' keys are Redis's, the paused node's the policy's, at once.
        for key in alive:
            assert limiter.decide(key).remaining == 0  # 5 - 1 - 4 batches
        for key in dead:
            decision = limiter.decide(key)
            assert (decision.allowed, decision.remaining) == (True, 0)
        after = limiter.stats()
        assert backend.stats().timeouts == timeouts  # no I/O to the dead node
        assert after.backend_decisions - before.backend_decisions == len(alive)
        assert after.breaker_fallbacks - before.breaker_fallbacks == len(dead)
    finally:
        redis_cluster.nodes[0].resume()
        backend.close()


def test_async_a_paused_node_opens_only_its_own_breaker(
    redis_cluster, fresh_name, paused_port
) -> None:
    clock = ManualClock(1_000_000_000)

    async def run() -> None:
        client = redis.asyncio.RedisCluster(host="127.0.0.1", port=paused_port)
        template = CircuitBreaker("redis", DEFAULT_BREAKER_CONFIG, clock=clock)
        backend = AsyncRedisBackend(client, timeout=TIMEOUT, breaker=template)
        limiter = AsyncRedisLimiter(
            "5/h", backend=backend, name=fresh_name(), on_backend_error="deny"
        )
        try:
            assert all(
                d.remaining == 4 for d in await limiter.decide_many_decisions(KEYS)
            )
            dead, alive = split_keys(backend, limiter, paused_port)
            redis_cluster.nodes[0].pause()
            try:
                for _ in range(DEFAULT_BREAKER_CONFIG.minimum_calls):
                    await limiter.decide_many_decisions(KEYS)
                states = {
                    name: breaker.state
                    for name, breaker in backend.node_breakers().items()
                }
                assert states.pop(f"127.0.0.1:{paused_port}") is State.OPEN
                assert set(states.values()) == {State.CLOSED}
                timeouts = backend.stats().timeouts
                for key in alive:
                    assert (await limiter.decide(key)).remaining == 0
                for key in dead:
                    decision = await limiter.decide(key)
                    assert not decision.allowed
                    assert decision.retry_after > 0  # the breaker's wait
                assert backend.stats().timeouts == timeouts
            finally:
                redis_cluster.nodes[0].resume()
            # The node is back: once its breaker's wait is over, a probe
            # goes through and Redis decides its keys again.
            clock.advance(DEFAULT_BREAKER_CONFIG.wait_duration)
            # (The calls that timed out may have run when it resumed.)
            assert (await limiter.decide(dead[0])).limit == 5
            assert limiter.stats().backend_decisions == len(KEYS) + 4 * len(alive) + 1
            state = backend.node_breakers()[f"127.0.0.1:{paused_port}"].state
            assert state is State.CLOSED
        finally:
            await backend.aclose()
            await client.aclose()

    asyncio.run(run())


def test_a_single_redis_keeps_the_backends_breaker(client) -> None:
    backend = RedisBackend(client)
    try:
        assert backend.node_breakers() == {}
        limiter = RedisLimiter("5/h", backend=backend, name="single-node")
        limiter.decide("k")
        assert backend.breaker.metrics().calls == 1
    finally:
        backend.close()


def test_the_default_policy_never_exceeds_the_quota(disposable_redis) -> None:
    # Four processes' limiters on a dead Redis: by default none admits, so
    # the fleet cannot exceed its quota; "local" at 1.0 admitted 4x it.
    assert DEFAULT_ON_BACKEND_ERROR == "deny"
    assert FailurePolicy().on_backend_error == "deny"
    clients = [redis.Redis(port=disposable_redis.port) for _ in range(4)]
    limiters = [
        RedisLimiter("5/h", backend=c, name="quota", on_backend_error=None)
        for c in clients
    ]
    try:
        disposable_redis.kill()
        admitted = sum(lim.try_acquire("k") for lim in limiters for _ in range(10))
        assert admitted == 0
        assert sum(lim.stats().deny_fallbacks for lim in limiters) == 40
    finally:
        for lim in limiters:
            lim.close()
        for c in clients:
            c.close()


def test_a_local_share_alone_chooses_the_local_policy() -> None:
    assert failure_policy().on_backend_error == "deny"
    chosen = failure_policy(local_share=0.25)
    assert (chosen.on_backend_error, chosen.local_share) == ("local", 0.25)
    assert failure_policy("allow", 0.5).on_backend_error == "allow"
    with pytest.raises(ValueError, match="local_share"):
        failure_policy(local_share=0)


def test_metrics_report_each_nodes_breaker(cluster_client, fresh_name) -> None:
    pytest.importorskip("prometheus_client")
    from prometheus_client import CollectorRegistry, generate_latest

    from ratefuse.metrics import RatefuseCollector

    backend = RedisBackend(cluster_client)
    try:
        RedisLimiter("5/h", backend=backend, name=fresh_name()).decide_many_decisions(
            KEYS
        )
        collector = RatefuseCollector(None)
        collector.add_backend("main", backend)
        registry = CollectorRegistry()
        registry.register(collector)
        text = generate_latest(registry).decode()
        for node in backend.node_breakers():
            assert f'breaker="backend:main@{node}",state="CLOSED"' in text
    finally:
        backend.close()
