"""The cluster slot map: read with CLUSTER SHARDS (Redis 7), and with
CLUSTER SLOTS where a node cannot answer SHARDS (Redis 6.2, or an ACL that
denies it), against the session's real cluster; the parser on replies
captured from a real Redis 7.0 cluster."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

redis = pytest.importorskip("redis")
from redis.asyncio import RedisCluster as AsyncRedisCluster  # noqa: E402
from redis.asyncio import SSLConnection as AsyncSSLConnection  # noqa: E402
from redis.exceptions import ResponseError  # noqa: E402

from ratefuse.redis import (  # noqa: E402
    AsyncRedisBackend,
    AsyncRedisLimiter,
    RedisBackend,
    RedisLimiter,
)
from ratefuse.redis._connection import uses_tls  # noqa: E402
from ratefuse.redis._slots import (  # noqa: E402
    SHARDS,
    SLOTS,
    SLOTS_COMMAND,
    SlotMap,
    shards_unavailable,
)
from redis_servers import RedisClusterServers, command  # noqa: E402

# Captured from a 3-primary redis-server 7.0.15 cluster (RESP2).
SHARDS_REPLY = [
    [
        b"slots",
        [10923, 16383],
        b"nodes",
        [
            [
                b"id",
                b"f3cf",
                b"port",
                37333,
                b"ip",
                b"127.0.0.1",
                b"endpoint",
                b"127.0.0.1",
                b"role",
                b"master",
                b"replication-offset",
                0,
                b"health",
                b"online",
            ]
        ],
    ],
    [
        b"slots",
        [5461, 10922],
        b"nodes",
        [
            [
                b"id",
                b"df56",
                b"port",
                32895,
                b"ip",
                b"127.0.0.1",
                b"endpoint",
                b"127.0.0.1",
                b"role",
                b"master",
                b"replication-offset",
                0,
                b"health",
                b"online",
            ]
        ],
    ],
    [
        b"slots",
        [0, 5460],
        b"nodes",
        [
            [
                b"id",
                b"1ea6",
                b"port",
                52393,
                b"ip",
                b"127.0.0.1",
                b"endpoint",
                b"127.0.0.1",
                b"role",
                b"master",
                b"replication-offset",
                0,
                b"health",
                b"online",
            ]
        ],
    ],
]
SLOTS_REPLY = [
    [0, 5460, [b"127.0.0.1", 52393, b"1ea6", []]],
    [5461, 10922, [b"127.0.0.1", 32895, b"df56", []]],
    [10923, 16383, [b"127.0.0.1", 37333, b"f3cf", []]],
]
QUERIED = ("10.0.0.9", 7000)
LEGACY_USER = "ratefuse-legacy"
LEGACY_PASSWORD = "legacy-pw"


def loaded(reply: object, fall_back: bool = False) -> SlotMap:
    slots = SlotMap()
    if fall_back:
        slots.fall_back()
    slots.update(reply, QUERIED)
    return slots


def test_shards_and_slots_replies_give_the_same_map() -> None:
    shards, slots = loaded(SHARDS_REPLY), loaded(SLOTS_REPLY, fall_back=True)
    assert [shards.node(slot) for slot in range(SLOTS)] == [
        slots.node(slot) for slot in range(SLOTS)
    ]
    assert shards.node(0) == ("127.0.0.1", 52393)
    assert shards.node(16383) == ("127.0.0.1", 37333)
    assert not shards.stale


def node(role: str, port: int, endpoint: bytes | None = b"10.0.0.1") -> list[object]:
    fields: list[object] = [b"id", b"x", b"port", port, b"role", role.encode()]
    if endpoint is not None:
        fields += [b"ip", b"10.0.0.1", b"endpoint", endpoint]
    return fields


def test_shards_maps_each_range_to_the_master_only() -> None:
    reply = [
        # A replica listed first, two ranges, an unknown endpoint.
        [
            b"slots",
            [0, 9, 100, 109],
            b"nodes",
            [node("replica", 2), node("master", 1, b"?")],
        ],
        # Tls only: no port field.
        [
            b"slots",
            [10, 99],
            b"nodes",
            [[b"id", b"y", b"tls-port", 3, b"ip", b"10.0.0.3", b"role", b"master"]],
        ],
        # No slots (a new shard), and a shard whose master failed away.
        [b"slots", [], b"nodes", [node("master", 4)]],
        [b"slots", [110, 16383], b"nodes", [node("replica", 5)]],
    ]
    slots = loaded(reply)
    assert slots.node(0) == slots.node(109) == ("10.0.0.9", 1)
    assert slots.node(10) == ("10.0.0.3", 3)
    assert slots.node(110) is None
    assert ("10.0.0.1", 4) not in slots.addresses()


@pytest.mark.parametrize(
    "reply", [[], "OK", [[b"slots"]], [[b"slots", [0, 1], b"nodes", [[b"role"]]]]]
)
def test_a_malformed_shards_reply_is_an_error(reply: object) -> None:
    with pytest.raises(ValueError, match="CLUSTER SHARDS"):
        loaded(reply)


def test_which_errors_mean_shards_is_unavailable() -> None:
    # Redis 6.2's reply, an ACL's, and errors that are not about SHARDS.
    assert shards_unavailable(
        ResponseError("Unknown subcommand or wrong number of arguments for 'SHARDS'")
    )
    assert shards_unavailable(
        ResponseError("unknown subcommand 'SHARDS'. Try CLUSTER HELP.")
    )
    assert shards_unavailable(
        ResponseError(
            "NOPERM this user has no permissions to run the 'cluster|shards' command"
        )
    )
    assert not shards_unavailable(ResponseError("LOADING Redis is loading"))
    assert not shards_unavailable(ConnectionError("reset"))
    assert not shards_unavailable(SLOTS_REPLY)


def map_commands(ports: list[int]) -> dict[str, int]:
    # Calls of CLUSTER SHARDS and SLOTS over all nodes, by INFO commandstats.
    calls = {"shards": 0, "slots": 0}
    for port in ports:
        for line in command(port, "INFO", "commandstats").splitlines():
            for name in calls:
                if line.startswith(f"cmdstat_cluster|{name}:"):
                    calls[name] += int(line.split("calls=")[1].split(",")[0])
    return calls


@pytest.fixture
def legacy_user(redis_cluster: RedisClusterServers) -> Iterator[str]:
    """`legacy_user` is a user of every node that may run anything but
    CLUSTER SHARDS: to the backend, a Redis 6.2 cluster."""
    for port in redis_cluster.ports:
        rules = ("reset", "on", f">{LEGACY_PASSWORD}", "~*", "&*", "+@all")
        command(port, "ACL", "SETUSER", LEGACY_USER, *rules, "-cluster|shards")
    yield LEGACY_USER
    for port in redis_cluster.ports:
        command(port, "ACL", "DELUSER", LEGACY_USER)


def decide_everywhere(limiter: RedisLimiter) -> None:
    # 60 keys, over every node: each admits its 3 units and no more.
    for index in range(60):
        admitted = [limiter.try_acquire(f"user-{index}") for _ in range(4)]
        assert admitted == [True, True, True, False]


def test_the_map_is_read_with_cluster_shards(
    redis_cluster: RedisClusterServers,
    cluster_client: object,
    fresh_name: Callable[[], str],
) -> None:
    before = map_commands(redis_cluster.ports)
    with (
        RedisBackend(cluster_client, timeout=5.0) as backend,  # type: ignore[arg-type]
        RedisLimiter("3/h", backend=backend, name=fresh_name()) as limiter,
    ):
        decide_everywhere(limiter)
        stats = backend.stats()
    after = map_commands(redis_cluster.ports)
    assert after["shards"] - before["shards"] == 1
    assert after["slots"] == before["slots"]
    assert (stats.slot_map_refreshes, stats.moved) == (1, 0)


def test_the_map_falls_back_to_cluster_slots(
    redis_cluster: RedisClusterServers, legacy_user: str, fresh_name: Callable[[], str]
) -> None:
    client = redis.RedisCluster(
        host="127.0.0.1",
        port=redis_cluster.ports[0],
        username=legacy_user,
        password=LEGACY_PASSWORD,
    )
    before = map_commands(redis_cluster.ports)
    try:
        with (
            RedisBackend(client, timeout=5.0) as backend,
            RedisLimiter("3/h", backend=backend, name=fresh_name()) as limiter,
        ):
            decide_everywhere(limiter)
            stats = backend.stats()
            assert backend._slots is not None
            assert backend._slots.command == SLOTS_COMMAND
    finally:
        client.close()
    after = map_commands(redis_cluster.ports)
    # One SHARDS refused by the ACL, then SLOTS (redis-py's client read
    # its own map before `before`).
    assert after["slots"] - before["slots"] == 1
    assert after["shards"] == before["shards"]  # denied calls are not counted
    assert (stats.slot_map_refreshes, stats.moved) == (1, 0)


def test_the_async_map_falls_back_to_cluster_slots(
    redis_cluster: RedisClusterServers, legacy_user: str, fresh_name: Callable[[], str]
) -> None:
    async def run() -> None:
        client = AsyncRedisCluster(
            host="127.0.0.1",
            port=redis_cluster.ports[0],
            username=legacy_user,
            password=LEGACY_PASSWORD,
        )
        try:
            async with (
                AsyncRedisBackend(client, timeout=5.0) as backend,
                AsyncRedisLimiter("3/h", backend=backend, name=fresh_name()) as limiter,
            ):
                for index in range(60):
                    admitted = [
                        await limiter.try_acquire(f"u-{index}") for _ in range(4)
                    ]
                    assert admitted == [True, True, True, False]
                assert backend._slots is not None
                assert backend._slots.command == SLOTS_COMMAND
                stats = backend.stats()
                assert (stats.slot_map_refreshes, stats.moved) == (1, 0)
        finally:
            await client.aclose()

    asyncio.run(run())


def test_the_async_map_is_read_with_cluster_shards(
    redis_cluster: RedisClusterServers, fresh_name: Callable[[], str]
) -> None:
    async def run() -> None:
        client = AsyncRedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
        try:
            async with (
                AsyncRedisBackend(client, timeout=5.0) as backend,
                AsyncRedisLimiter("3/h", backend=backend, name=fresh_name()) as limiter,
            ):
                assert await limiter.try_acquire("k")
                assert backend._slots is not None
                assert backend._slots.command == SHARDS
        finally:
            await client.aclose()

    asyncio.run(run())


def test_a_tls_backend_takes_the_tls_port_of_shards() -> None:
    both = [
        [
            b"slots",
            [0, 16383],
            b"nodes",
            [
                [
                    b"port",
                    6379,
                    b"tls-port",
                    6380,
                    b"ip",
                    b"10.0.0.1",
                    b"role",
                    b"master",
                ]
            ],
        ]
    ]
    plain, tls = SlotMap(), SlotMap(tls=True)
    plain.update(both, QUERIED)
    tls.update(both, QUERIED)
    assert plain.node(0) == ("10.0.0.1", 6379)
    assert tls.node(0) == ("10.0.0.1", 6380)


def test_tls_is_told_by_the_connection_class() -> None:
    assert uses_tls(redis.SSLConnection)
    assert uses_tls(AsyncSSLConnection)
    assert not uses_tls(redis.Connection)
    assert not uses_tls(redis.UnixDomainSocketConnection)
