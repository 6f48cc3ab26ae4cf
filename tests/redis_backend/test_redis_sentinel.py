"""Redis Sentinel: a backend on a ``Sentinel.master_for`` client keeps
deciding across a failover, against a real primary, replica and sentinel.

During the switch the failure policy ("deny") answers; afterwards every
decision is the new primary's. None is doubled (the new primary never
counts more than Redis admitted); decisions the old primary admitted after
the replica stopped copying it are lost with it (Redis replication is
asynchronous), and the test bounds them by the decisions of the switch.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

redis = pytest.importorskip("redis")
from redis.sentinel import Sentinel  # noqa: E402

from ratefuse.redis import RedisBackend, RedisLimiter  # noqa: E402
from redis_servers import SENTINEL_MASTER, RedisSentinelServers  # noqa: E402

LIMIT = 1_000_000
# Decisions the new primary must make after the switch before the test ends.
AFTER = 200
SWITCH_TIMEOUT = 15.0


@pytest.fixture
def sentinel_servers() -> Iterator[RedisSentinelServers]:
    """`sentinel_servers` is a primary, a replica and a sentinel of the
    test's own (the failover changes them)."""
    servers = RedisSentinelServers().start()
    yield servers
    servers.stop()


def used(limiter: RedisLimiter) -> int:
    # Units the limit's current state on the primary counts as taken.
    return LIMIT - limiter.decide("k", 0).remaining


def test_decisions_follow_a_sentinel_failover(
    sentinel_servers: RedisSentinelServers,
) -> None:
    assert sentinel_servers.sentinel is not None
    sentinel = Sentinel(
        [("127.0.0.1", sentinel_servers.sentinel.port)], socket_timeout=1.0
    )
    client = sentinel.master_for(SENTINEL_MASTER)
    backend = RedisBackend(client, timeout=0.5)
    limiter = RedisLimiter(
        f"{LIMIT}/h",
        backend=backend,
        name="sentinel",
        algorithm="fixed_window",
        deny_cache=False,
    )
    old, new = sentinel_servers.master_port(), sentinel_servers.replica_port()
    try:
        admitted = sum(limiter.try_acquire("k") for _ in range(200))
        assert admitted == 200
        sentinel_servers.failover()
        deadline = time.monotonic() + SWITCH_TIMEOUT
        after = 0
        while after < AFTER:
            assert time.monotonic() < deadline, "no decision on the new primary"
            before = limiter.stats().backend_decisions
            admitted += limiter.try_acquire("k")
            answered = limiter.stats().backend_decisions > before
            promoted = sentinel_servers.master_port() == new
            after = after + 1 if answered and promoted else 0
        stats = limiter.stats()
        # Redis never denies below the limit: an admission is a Redis decision.
        assert admitted == stats.backend_decisions
        assert stats.decisions == stats.backend_decisions + stats.fallbacks
        on_new = used(limiter)
        assert sentinel_servers.master_port() == new != old
        # None doubled: the new primary counts no more than Redis admitted.
        assert on_new <= admitted
        # Lost: only what the old primary admitted during the switch.
        assert admitted - on_new <= admitted - 200 - AFTER
        print(f"admitted {admitted} on new {on_new} fallbacks {stats.fallbacks}")
    finally:
        limiter.close()
        backend.close()
        client.close()
