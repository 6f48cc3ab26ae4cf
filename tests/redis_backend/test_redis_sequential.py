"""The sequential decision's short path (issue 15): one call to the single
node, already contacted, settled without an Exchange when it gets five
integers; every other reply goes on through the Exchange as the first
round's, on a real redis-server."""

from __future__ import annotations

import hashlib

import pytest
import redis

from ratefuse.core.errors import BackendError
from ratefuse.rates import build_specs, parse
from ratefuse.redis import RedisBackend, RedisLimiter
from ratefuse.redis._codec import Packer
from ratefuse.redis._exchange import single_call
from ratefuse.redis._scripts import Script
from ratefuse.redis._wire_limits import to_wire_limits


def foreign_packer(source: bytes) -> Packer:
    """`foreign_packer` packs calls of the script ``source`` (loaded on
    the server) with one limit's arguments."""
    sha = hashlib.sha1(source, usedforsecurity=False).hexdigest().encode()
    specs = list(build_specs(parse("5/h"), "gcra"))
    return Packer(Script("foreign", source, sha), to_wire_limits(specs))


def test_each_sequential_decision_is_one_round_trip_and_one_call(
    client, fresh_name
) -> None:
    backend = RedisBackend(client, timeout=5.0)
    try:
        limiter = RedisLimiter("5/h", backend=backend, name=fresh_name())
        limiter.decide("first")  # the first contact: eviction check, then a round
        before = backend.stats()
        remaining = [limiter.decide(f"k{index % 2}").remaining for index in range(6)]
        after = backend.stats()
        assert remaining == [4, 4, 3, 3, 2, 2]
        assert (after.round_trips - before.round_trips, after.calls - before.calls) == (
            6,
            6,
        )
        assert backend.breaker.metrics().failed_calls == 0
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("source", "error"),
    [
        # Five integers no script gives: a negative remaining.
        (b"return {1, -5, 0, 0, 0}", "remaining=-5"),
        # Five values, not integers.
        (b"return {'a', 'b', 'c', 'd', 'e'}", "unreadable"),
        # Not five values.
        (b"return {1, 2}", "unexpected script reply"),
        # A script that failed on what it read: the call fails, the node
        # does not.
        (b"error('bad data')", "bad data"),
    ],
)
def test_a_reply_off_the_short_path_fails_through_the_exchange(
    client, source: bytes, error: str
) -> None:
    backend = RedisBackend(client, timeout=5.0)
    try:
        packer = foreign_packer(source)
        store = RedisLimiter("5/h", backend=backend, name="foreign")._store
        store.decide_raw("contact")  # the node is contacted: the short path
        client.script_load(source)
        call = single_call(packer, b"foreign-key", 1, None, False)
        with pytest.raises(BackendError, match=error):
            store.send(packer, call)
        assert backend.breaker.metrics().failed_calls == 0
    finally:
        backend.close()


def test_noscript_on_the_short_path_reloads_and_resends(client) -> None:
    backend = RedisBackend(client, timeout=5.0)
    try:
        source = b"return {1, 7, 0, 0, 0}"
        packer = foreign_packer(source)
        store = RedisLimiter("5/h", backend=backend, name="noscript")._store
        store.decide_raw("contact")
        client.script_flush()
        call = single_call(packer, b"foreign-key", 1, None, False)
        assert store.send(packer, call) == (1, 7, 0, 0, 0)
        assert backend.stats().noscript_reloads == 1
    finally:
        backend.close()


def test_a_stopped_server_fails_the_short_path_as_a_transport_error(
    disposable_redis,
) -> None:
    connection = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    backend = RedisBackend(connection, timeout=1.0)
    try:
        limiter = RedisLimiter(
            "5/h", backend=backend, name="stopped", on_backend_error="deny"
        )
        assert limiter.decide("k").allowed
        disposable_redis.stop()
        assert not limiter.decide("k").allowed  # the policy answers
        assert limiter.stats().fallbacks == 1
        assert backend.stats().transport_errors == 1
        assert backend.breaker.metrics().failed_calls == 1
    finally:
        backend.close()
        connection.close()
