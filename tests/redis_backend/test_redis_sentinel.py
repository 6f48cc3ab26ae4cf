"""Redis Sentinel: a backend on a ``Sentinel.master_for`` client keeps
deciding across a failover, against a real primary, replica and sentinel.

During the switch the failure policy ("deny") answers; afterwards every
decision is the new primary's. None is doubled (the new primary never
counts more than Redis admitted); decisions the old primary admitted after
the replica stopped copying it, until the backend asks the sentinel again,
are lost with it (Redis replication is asynchronous, see
:mod:`ratefuse.redis._sentinel`): the test bounds them by the decisions of
the switch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

redis = pytest.importorskip("redis")
from redis.asyncio.sentinel import Sentinel as AsyncSentinel  # noqa: E402
from redis.sentinel import Sentinel  # noqa: E402

from ratefuse.redis import (  # noqa: E402
    AsyncRedisBackend,
    AsyncRedisLimiter,
    LimiterStats,
    RedisBackend,
    RedisLimiter,
)
from ratefuse.redis._sentinel import SENTINEL_RECHECK, SentinelWatch  # noqa: E402
from redis_servers import SENTINEL_MASTER, RedisSentinelServers  # noqa: E402

LIMIT = 1_000_000
# Decisions before the failover, and after the switch.
BEFORE = 200
AFTER = 200
SWITCH_TIMEOUT = 15.0
SETTINGS: dict[str, object] = {"algorithm": "fixed_window", "deny_cache": False}


@pytest.fixture
def sentinel_servers() -> Iterator[RedisSentinelServers]:
    """`sentinel_servers` is a primary, a replica and a sentinel of the
    test's own (the failover changes them)."""
    servers = RedisSentinelServers().start()
    yield servers
    servers.stop()


def used(port: int) -> int:
    # Units the limit's state on the server at ``port`` counts as taken,
    # read through a backend of its own.
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        with (
            RedisBackend(client, timeout=5.0) as backend,
            RedisLimiter(
                f"{LIMIT}/h",
                backend=backend,
                name="sentinel",
                **SETTINGS,  # type: ignore[arg-type]
            ) as limiter,
        ):
            return LIMIT - limiter.decide("k", 0).remaining
    finally:
        client.close()


Acquire = Callable[[], Awaitable[bool]]
Stats = Callable[[], LimiterStats]


async def fail_over_under_traffic(
    servers: RedisSentinelServers, acquire: Acquire, stats_of: Stats
) -> None:
    # Decides before, during and after a failover through ``acquire`` (one
    # unit of key "k") and checks what the new primary counts.
    old, new = servers.master_port(), servers.replica_port()
    admitted = 0
    for _ in range(BEFORE):
        admitted += await acquire()
    assert admitted == BEFORE
    servers.failover()
    # The switch: until the sentinel names the new primary, and then until
    # the backend has surely asked it (twice its recheck).
    deadline = time.monotonic() + SWITCH_TIMEOUT
    while servers.master_port() != new:
        assert time.monotonic() < deadline, "the sentinel did not fail over"
        admitted += await acquire()
    settled = time.monotonic() + 2 * SENTINEL_RECHECK
    while time.monotonic() < settled:
        admitted += await acquire()
    switch = admitted - BEFORE
    before = stats_of()
    for _ in range(AFTER):
        admitted += await acquire()
    stats = stats_of()
    # After the switch, Redis decides every call again.
    assert stats.backend_decisions - before.backend_decisions == AFTER
    # Redis never denies below the limit: an admission is a Redis decision;
    # the rest the policy answered.
    assert admitted == stats.backend_decisions
    assert stats.decisions == stats.backend_decisions + stats.fallbacks
    on_new = used(new)
    # None doubled: the new primary counts no more than Redis admitted.
    assert on_new <= admitted
    # Lost: at most what the old primary admitted during the switch;
    # everything before it was copied, everything after went to the new.
    assert admitted - on_new <= switch
    assert on_new >= BEFORE + AFTER
    assert servers.master_port() == new != old


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
        **SETTINGS,  # type: ignore[arg-type]
    )

    async def acquire() -> bool:
        return limiter.try_acquire("k")

    try:
        asyncio.run(fail_over_under_traffic(sentinel_servers, acquire, limiter.stats))
    finally:
        limiter.close()
        backend.close()
        client.close()
        for watcher in sentinel.sentinels:
            watcher.close()


def test_async_decisions_follow_a_sentinel_failover(
    sentinel_servers: RedisSentinelServers,
) -> None:
    assert sentinel_servers.sentinel is not None
    port = sentinel_servers.sentinel.port

    async def run() -> None:
        sentinel = AsyncSentinel([("127.0.0.1", port)], socket_timeout=1.0)
        client = sentinel.master_for(SENTINEL_MASTER)
        backend = AsyncRedisBackend(client, timeout=0.5)
        limiter = AsyncRedisLimiter(
            f"{LIMIT}/h",
            backend=backend,
            name="sentinel",
            **SETTINGS,  # type: ignore[arg-type]
        )

        async def acquire() -> bool:
            return await limiter.try_acquire("k")

        try:
            await fail_over_under_traffic(sentinel_servers, acquire, limiter.stats)
        finally:
            await limiter.aclose()
            await backend.aclose()
            await client.aclose()
            for watcher in sentinel.sentinels:
                await watcher.aclose()

    asyncio.run(run())


class _Pool:
    # A stand-in Sentinel pool: answers ``answers`` in turn (an exception
    # is raised).
    is_master = True

    def __init__(self, *answers: object) -> None:
        self.answers = list(answers)
        self.asked = 0

    def get_master_address(self) -> object:
        self.asked += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class _Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port


def test_sentinel_watch_asks_once_per_recheck_and_keeps_its_address() -> None:
    now = [0.0]
    pool = _Pool(("a", 1), redis.ConnectionError("sentinel down"), ("b", 2))
    watch = SentinelWatch(pool, recheck=0.5, clock=lambda: now[0])
    assert not watch.stale(_Connection("a", 1))  # unknown yet: keep
    watch.ask()
    watch.ask()  # not due again before the recheck
    assert pool.asked == 1
    assert watch.address == ("a", 1)
    now[0] = 0.5
    watch.ask()  # the sentinel fails: the address known stays
    assert pool.asked == 2
    assert watch.address == ("a", 1)
    now[0] = 1.0
    watch.ask()
    assert watch.address == ("b", 2)
    assert watch.stale(_Connection("a", 1))
    assert not watch.stale(_Connection("b", 2))


def test_a_replica_client_is_refused() -> None:
    sentinel = Sentinel([("127.0.0.1", 1)], socket_timeout=0.1)
    with pytest.raises(ValueError, match="master_for"):
        RedisBackend(sentinel.slave_for(SENTINEL_MASTER))
    replicas = AsyncSentinel([("127.0.0.1", 1)]).slave_for(SENTINEL_MASTER)
    with pytest.raises(ValueError, match="master_for"):
        AsyncRedisBackend(replicas)
