"""Log records of the Redis backend against real servers: a limiter that
falls back logs once per outage and once when Redis decides again, the
fleet breaker likewise (and its transitions once, not also its local
breaker's), and the lease table logs replies it did not expect."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import redis
from fleet_breaker_support import FleetClock, fail, fresh_fleet_name, make_breaker

from breaker_support import ManualClock
from log_support import capture
from ratefuse.breaker import BreakerConfig, CircuitBreaker, State
from ratefuse.redis import DEFAULT_BREAKER_CONFIG, RedisBackend, RedisLimiter
from redis_servers import RedisServer

TIMEOUT = 0.05


@pytest.fixture
def node_client(disposable_redis: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    yield connection
    connection.close()
    disposable_redis.resume()


def test_a_fallback_is_logged_once_per_outage_and_the_recovery_once(
    disposable_redis: RedisServer, node_client: redis.Redis
) -> None:
    breaker = CircuitBreaker("redis", DEFAULT_BREAKER_CONFIG, clock=ManualClock())
    backend = RedisBackend(node_client, timeout=TIMEOUT, breaker=breaker)
    limiter = RedisLimiter("5/h", backend=backend, name="logged", local_share=0.5)
    try:
        with capture() as events:
            assert limiter.decide("alice").allowed
            disposable_redis.pause()
            # One failure: the breaker (3 calls minimum) stays closed.
            assert limiter.decide("alice").allowed  # the local policy
            disposable_redis.resume()
            # Redis again (the timed-out call may have run there too).
            assert limiter.decide("alice").allowed
            assert limiter.decide("alice").allowed
        stats = limiter.stats()
        assert (stats.local_fallbacks, stats.backend_decisions) == (1, 3)
        (fallback,) = events.named("backend.fallback")
        (recovered,) = events.named("backend.recovered")
        assert fallback.name == recovered.name == "ratefuse.redis"
        assert (fallback.limiter, fallback.backend, fallback.policy) == (  # type: ignore[attr-defined]
            "logged",
            "redis",
            "local",
        )
        assert "Timeout" in fallback.error or "Error" in fallback.error  # type: ignore[attr-defined]
        assert "alice" not in fallback.getMessage()
        assert not hasattr(fallback, "key_hash")  # once per outage: no key
        assert recovered.limiter == "logged"  # type: ignore[attr-defined]
        assert events.records.index(fallback) < events.records.index(recovered)
    finally:
        limiter.close()
        backend.close()


def test_the_fleet_breaker_logs_its_fallback_recovery_and_transitions_once(
    disposable_redis: RedisServer, node_client: redis.Redis
) -> None:
    config = BreakerConfig(window_size=10, minimum_calls=6, wait_duration=10.0)
    breaker = make_breaker(
        node_client, fresh_fleet_name(), config, FleetClock(), timeout=0.2
    )
    try:
        with capture() as events:
            disposable_redis.kill()
            breaker.flush()
            assert breaker.fallen_back
            fail(breaker, 6)  # the local breaker opens: the fleet's state
            assert breaker.state == State.OPEN
            disposable_redis.start()
            breaker.flush()
            assert not breaker.fallen_back
        assert [r.event_name for r in events.records] == [  # type: ignore[attr-defined]
            "backend.fallback",
            "breaker.transition",
            "backend.recovered",
            "breaker.transition",
        ]
        transitions = events.named("breaker.transition")
        assert [(r.old_state, r.state) for r in transitions] == [  # type: ignore[attr-defined]
            ("CLOSED", "OPEN"),
            ("OPEN", "CLOSED"),
        ]
        assert {r.breaker for r in events.records} == {breaker.name}  # type: ignore[attr-defined]
    finally:
        breaker.close()


def test_lease_and_deny_cache_anomalies_are_logged(
    node_backend: RedisBackend, fresh_name: object
) -> None:
    name = fresh_name()  # type: ignore[operator]
    leased = RedisLimiter("100/s", backend=node_backend, name=name, lease=True)
    cached = RedisLimiter("100/s", backend=node_backend, name=name + "-c")
    answers, cache = leased._answers, cached._answers
    assert answers is not None
    assert cache is not None
    now = answers.clock()
    with capture() as events:
        # A lease reply granting more than asked (clamped to what was asked).
        answers.absorb("bob", 5, (7, 0, 0, 0, 0), now)
        # A denial without a wait: nothing to cache.
        cache.remember("bob", 1, (0, 0, 0, 0, 0), now)
        # The expected replies log nothing.
        answers.absorb("bob", 5, (5, 0, 0, 0, 0), now)
        cache.remember("bob", 1, (0, 0, 1000, 1000, 0), now)
    lease, deny = events.records
    assert (lease.event_name, lease.anomaly, lease.units_asked) == (  # type: ignore[attr-defined]
        "lease.anomaly",
        "over_grant",
        5,
    )
    assert (deny.event_name, deny.anomaly) == (  # type: ignore[attr-defined]
        "deny_cache.anomaly",
        "denial_without_wait",
    )
    assert lease.name == deny.name == "ratefuse.lease"
    assert lease.limiter == name
    assert lease.levelno == logging.WARNING
    leased.close()
    cached.close()
