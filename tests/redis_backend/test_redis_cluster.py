"""Redis Cluster: redirections and reloads, per call, with real servers.

A slot is migrated mid-test (ASK while it migrates, TRYAGAIN for a
multi-key call that spans both nodes, MOVED once the move is final, seen by
a backend whose slot map is then stale); SCRIPT FLUSH on every node makes
the next calls reload the script.
"""

from __future__ import annotations

from redis.crc import key_slot
from script_path_support import force_path

from ratefuse.redis import RedisBackend, RedisLimiter
from ratefuse.redis._script_paths import ScriptPath
from redis_servers import command


def same_slot_subject(limiter: RedisLimiter, slot: int) -> str:
    """A subject other than "migrating" whose key is in ``slot``."""
    for index in range(1_000_000):
        subject = f"neighbour-{index}"
        if key_slot(limiter._schema.key(subject)) == slot:
            return subject
    raise AssertionError("no subject found for the slot")


def test_ask_tryagain_and_moved_during_a_slot_migration(
    redis_cluster, cluster_client, fresh_name
) -> None:
    backend = RedisBackend(cluster_client, timeout=5.0)
    limiter = RedisLimiter("10/h; 100/d", backend=backend, name=fresh_name())
    try:
        subject = "migrating"
        key = limiter._schema.key(subject)
        slot = key_slot(key)
        neighbour = same_slot_subject(limiter, slot)
        assert limiter.decide(subject).remaining == 9
        assert limiter.decide(neighbour).remaining == 9
        assert backend._slots is not None
        source_address = backend._slots.node(slot)
        assert source_address is not None
        source = source_address[1]
        target = next(port for port in redis_cluster.ports if port != source)
        source_id, target_id = (
            redis_cluster.node_id(source),
            redis_cluster.node_id(target),
        )
        command(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", source_id)
        command(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", target_id)
        move = ["MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS"]
        assert command(source, *move, key.decode()).strip() == "OK"

        # The key is on the target now: the source answers ASK.
        assert limiter.decide(subject).remaining == 8
        assert backend.stats().ask >= 1
        # One call for both keys (one slot), one key on each node: TRYAGAIN,
        # then one call per key (one of them asked for again).
        decisions = limiter.decide_many_decisions([subject, neighbour])
        assert [d.remaining for d in decisions] == [7, 8]
        assert backend.stats().tryagain >= 1

        command(source, *move, limiter._schema.key(neighbour).decode())
        for port in redis_cluster.ports:
            command(port, "CLUSTER", "SETSLOT", str(slot), "NODE", target_id)
        # The backend's map still names the source, which answers MOVED.
        moved_before = backend.stats().moved
        assert limiter.decide(subject).remaining == 6
        assert backend.stats().moved == moved_before + 1
        assert backend._slots.node(slot) == ("127.0.0.1", target)
        assert [
            d.remaining for d in limiter.decide_many_decisions([neighbour, subject])
        ] == [
            7,
            5,
        ]
        assert limiter.stats().fallbacks == 0
        limiter.reset(subject)
        assert limiter.decide(subject, 0).remaining == 10
    finally:
        backend.close()


def test_script_flush_on_every_node(redis_cluster, cluster_client, fresh_name) -> None:
    backend = RedisBackend(cluster_client, timeout=5.0)
    # Single decisions go out as FCALL, which SCRIPT FLUSH leaves alone
    # (test_redis_functions.py flushes the library).
    force_path(backend, ScriptPath.EVALSHA)
    limiter = RedisLimiter("10/h", "sliding_window", backend=backend, name=fresh_name())
    try:
        keys = [f"k{index}" for index in range(50)]
        assert all(d.remaining == 9 for d in limiter.decide_many_decisions(keys))
        for port in redis_cluster.ports:
            command(port, "SCRIPT", "FLUSH")
        reloads = backend.stats().noscript_reloads
        assert all(d.remaining == 8 for d in limiter.decide_many_decisions(keys))
        # One SCRIPT LOAD per node, not one per call.
        assert backend.stats().noscript_reloads - reloads == 3
        for port in redis_cluster.ports:
            command(port, "SCRIPT", "FLUSH")
        assert limiter.decide("k1").remaining == 7
        assert limiter.stats().fallbacks == 0
    finally:
        backend.close()


def test_a_batch_is_one_round_trip_per_node(cluster_client, fresh_name) -> None:
    backend = RedisBackend(cluster_client, timeout=5.0)
    limiter = RedisLimiter("3/s", "fixed_window", backend=backend, name=fresh_name())
    try:
        # Loads the slot map, and the script on every node (calls of
        # several keys: a call of one goes out as FCALL).
        limiter.decide_many_decisions([f"warm-{index % 30}" for index in range(300)])
        before = backend.stats()
        keys = [f"user-{index % 400}" for index in range(1000)]
        decisions = limiter.decide_many_decisions(keys)
        after = backend.stats()
        assert after.round_trips - before.round_trips == 1
        assert sum(d.allowed for d in decisions) == 400 * 2 + 200  # 3 each, in order
    finally:
        backend.close()
