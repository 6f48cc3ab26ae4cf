"""Error replies and eviction (issue 21, item 10), on real servers: an error
reply about the server (OOM under maxmemory with noeviction) counts against
the node's breaker, which then answers without a round trip; a key someone
overwrote with another type (WRONGTYPE) is repaired, does not count against
the node, and is decided by Redis again; a node whose eviction policy can
drop limiter keys is found before its first decision, logged and counted,
and a node that refuses CONFIG is still served."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio
from redis.exceptions import ResponseError

from breaker_support import ManualClock, breaker_class
from ratefuse.breaker import State
from ratefuse.redis import (
    DEFAULT_BREAKER_CONFIG,
    AsyncRedisBackend,
    AsyncRedisLimiter,
    RedisBackend,
    RedisLimiter,
)
from ratefuse.redis._eviction import evicting_policy
from ratefuse.redis._repair import counts_against_node, key_type
from ratefuse.redis._scripts import script


@pytest.fixture
def node_client(disposable_redis) -> Iterator[redis.Redis]:
    connection = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    yield connection
    connection.close()


def make_backend(impl, client: redis.Redis) -> tuple[RedisBackend, ManualClock]:
    clock = ManualClock(1_000_000_000)
    breaker = breaker_class(impl)("redis", DEFAULT_BREAKER_CONFIG, clock=clock)
    return RedisBackend(client, timeout=1.0, breaker=breaker), clock


@pytest.mark.parametrize(
    ("reply", "counts"),
    [
        (ResponseError("OOM command not allowed when used memory > 'maxmemory'"), True),
        (ResponseError("BUSY Redis is busy running a script"), True),
        (ResponseError("LOADING Redis is loading the dataset in memory"), True),
        (ResponseError("READONLY You can't write against a read only replica."), True),
        (ResponseError("WRONGTYPE Operation against a key holding the wrong"), False),
        (ResponseError("ERR user_script:1: attempt to compare nil with number"), False),
        (ResponseError("ERR user_function:3: attempt to compare nil with nu"), False),
        # Redis 6.2 wraps a command's error in the script's.
        (ResponseError("ERR Error running script (call to f_x): -OOM command"), True),
        (ResponseError("ERR Error running script (call to f_x): WRONGTYPE Op"), False),
        (TimeoutError("timed out"), True),
        (ConnectionError("refused"), True),
        ([1, 0, 0, 0, 0], False),
    ],
)
def test_which_replies_count_against_a_node(reply: object, counts: bool) -> None:
    assert counts_against_node(reply) is counts


def test_out_of_memory_opens_the_breaker(impl, node_client) -> None:
    backend, _ = make_backend(impl, node_client)
    limiter = RedisLimiter("5/h", backend=backend, name="oom", on_backend_error="local")
    try:
        assert limiter.decide("k").remaining == 4
        node_client.config_set("maxmemory", 1)  # noeviction: writes refused
        for _ in range(DEFAULT_BREAKER_CONFIG.minimum_calls):
            assert limiter.decide("k").limit == 5  # local, 100% share
        assert backend.breaker.state is State.OPEN
        assert backend.stats().error_replies >= 2
        trips = backend.stats().round_trips
        rejected = limiter.stats().breaker_fallbacks
        for _ in range(20):
            limiter.decide("k")
        assert backend.stats().round_trips == trips  # no I/O while open
        assert limiter.stats().breaker_fallbacks == rejected + 20
    finally:
        node_client.config_set("maxmemory", 0)
        backend.close()


@pytest.mark.parametrize(
    ("algorithm", "garbage"),
    [("gcra", "hash"), ("fixed_window", "list"), ("sliding_log", "string")],
)
@pytest.mark.parametrize("policy", ["local", "allow", "deny"])
def test_a_wrong_typed_key_is_repaired(
    impl, node_client, algorithm: str, garbage: str, policy: str
) -> None:
    backend, _ = make_backend(impl, node_client)
    limiter = RedisLimiter(
        "5/h", algorithm, backend=backend, name=f"wt-{policy}", on_backend_error=policy
    )
    key = limiter._schema.key("k")
    try:
        overwrite(node_client, key, garbage)
        decision = limiter.decide("k")
        # Repaired and resent at once: Redis's decision, the limit afresh.
        assert (decision.limit, decision.remaining) == (5, 4)
        assert node_client.type(key).decode() == key_type(script(algorithm)).decode()
        assert backend.stats().wrongtype_repairs == 1
        assert limiter.stats().fallbacks == 0
        assert limiter.decide("k").remaining == 3
    finally:
        node_client.delete(key)
        backend.close()


def overwrite(client: redis.Redis, key: bytes, kind: str) -> None:
    client.delete(key)
    if kind == "hash":
        client.hset(key, "x", "1")
    elif kind == "list":
        client.rpush(key, "x")
    else:
        client.set(key, "garbage")


def test_a_wrong_typed_key_in_a_batch_is_repaired_and_never_trips(
    impl, node_client
) -> None:
    # sliding_log keeps hashes: a batch that meets a string fails (the keys
    # before it were decided, so it is not resent), the key is repaired,
    # and the next batch is Redis's. However often it happens, the node's
    # breaker does not count it: the server is fine.
    backend, _ = make_backend(impl, node_client)
    limiter = RedisLimiter(
        "100/h",
        "sliding_log",
        backend=backend,
        name="wt-batch",
        on_backend_error="local",
    )
    keys = ["a", "b", "c"]
    try:
        for attempt in range(6):
            overwrite(node_client, limiter._schema.key("b"), "string")
            decisions = limiter.decide_many_decisions(keys)
            assert [d.limit for d in decisions] == [100] * 3
            assert node_client.type(limiter._schema.key("b")) in (b"none", b"hash")
            assert backend.breaker.state is State.CLOSED, attempt
        assert backend.stats().wrongtype_repairs == 6
        assert limiter.stats().local_fallbacks == 18
        before = limiter.stats().backend_decisions
        assert all(d.allowed for d in limiter.decide_many_decisions(keys))
        assert limiter.stats().backend_decisions == before + 3
    finally:
        node_client.delete(*(limiter._schema.key(key) for key in keys))
        backend.close()


@pytest.mark.parametrize(
    ("policy", "evicting"),
    [("allkeys-lru", True), ("volatile-ttl", True), ("noeviction", False)],
)
def test_an_evicting_policy_is_found_at_first_contact(
    node_client, caplog, policy: str, evicting: bool
) -> None:
    node_client.config_set("maxmemory-policy", policy)
    node_client.config_set("maxmemory", "100mb")
    backend = RedisBackend(node_client)
    limiter = RedisLimiter("5/h", backend=backend, name="evict")
    try:
        with caplog.at_level(logging.WARNING, logger="ratefuse.redis"):
            for _ in range(3):
                assert limiter.decide("k").limit == 5
        warned = [r for r in caplog.records if "maxmemory-policy" in r.getMessage()]
        assert len(warned) == (1 if evicting else 0)
        if evicting:
            assert policy in warned[0].getMessage()
        stats = backend.stats()
        assert (stats.evicting_nodes, stats.unchecked_nodes) == (int(evicting), 0)
        assert limiter.stats().backend_decisions == 3
    finally:
        backend.close()


def test_a_node_that_refuses_config_is_still_served(
    disposable_redis, node_client
) -> None:
    node_client.execute_command(
        "ACL", "SETUSER", "limited", "on", ">secret", "~*", "+@all", "-config"
    )
    limited = redis.Redis(
        host="127.0.0.1",
        port=disposable_redis.port,
        username="limited",
        password="secret",
    )
    backend = RedisBackend(limited)
    limiter = RedisLimiter("5/h", backend=backend, name="acl")
    try:
        assert [limiter.decide("k").remaining for _ in range(2)] == [4, 3]
        stats = backend.stats()
        assert (stats.evicting_nodes, stats.unchecked_nodes) == (0, 1)
        assert limiter.stats().fallbacks == 0
    finally:
        backend.close()
        limited.close()


def test_async_evicting_policy_and_wrong_type(disposable_redis, caplog) -> None:
    sync = redis.Redis(port=disposable_redis.port)
    sync.config_set("maxmemory-policy", "allkeys-lfu")

    async def run() -> None:
        client = redis.asyncio.Redis(port=disposable_redis.port)
        backend = AsyncRedisBackend(client)
        limiter = AsyncRedisLimiter("5/h", backend=backend, name="async-faults")
        try:
            sync.hset(limiter._schema.key("k"), "x", "1")
            with caplog.at_level(logging.WARNING, logger="ratefuse.redis"):
                decision = await limiter.decide("k")
            assert (decision.limit, decision.remaining) == (5, 4)
            stats = backend.stats()
            assert (stats.evicting_nodes, stats.wrongtype_repairs) == (1, 1)
            assert any("allkeys-lfu" in r.getMessage() for r in caplog.records)
        finally:
            await backend.aclose()
            await client.aclose()

    try:
        asyncio.run(run())
    finally:
        sync.close()


def test_evicting_policy_reads_config_replies() -> None:
    assert (
        evicting_policy([b"maxmemory", b"0", b"maxmemory-policy", b"noeviction"])
        is None
    )
    assert evicting_policy(
        [b"maxmemory", b"1024", b"maxmemory-policy", b"allkeys-lru"]
    ) == ("allkeys-lru", "1024")
    assert evicting_policy([b"maxmemory"]) is None
    assert evicting_policy(b"junk") is None


def test_async_a_cancelled_first_contact_is_asked_again(disposable_redis) -> None:
    sync = redis.Redis(port=disposable_redis.port)

    async def run() -> None:
        client = redis.asyncio.Redis(port=disposable_redis.port)
        backend = AsyncRedisBackend(client, timeout=1.0)
        limiter = AsyncRedisLimiter("5/h", backend=backend, name="cancelled")
        try:
            disposable_redis.pause()
            try:
                task = asyncio.ensure_future(limiter.decide("k"))
                await asyncio.sleep(0.05)  # inside CONFIG GET: the node is paused
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                disposable_redis.resume()
            sync.config_set("maxmemory-policy", "allkeys-random")
            assert (await limiter.decide("k")).remaining == 4
            assert backend.stats().evicting_nodes == 1
            assert backend.breaker.state is State.CLOSED
        finally:
            await backend.aclose()
            await client.aclose()

    try:
        asyncio.run(run())
    finally:
        sync.close()
