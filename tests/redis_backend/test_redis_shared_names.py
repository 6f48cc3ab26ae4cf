"""Limiters that share a name share the limits they have in common, and
never erase each other's: a key holds every limiter's entries, and its
expiry covers all of them. Each script used to set the key's TTL from its
own limits, so one decision of a "100/s" limiter cut the TTL a "2/h" entry
needs to about 10 ms, after which the 2/h limiter admitted 2 more."""

from __future__ import annotations

import pytest
import redis

from ratefuse.redis import RedisLimiter

ALGORITHMS = ["gcra", "fixed_window", "sliding_window", "sliding_log"]
HOUR_MS = 3_600_000


@pytest.fixture(params=["node", "cluster"])
def redis_client(request):
    return request.getfixturevalue(
        "client" if request.param == "node" else "cluster_client"
    )


def _limiter(client, limits: str, algorithm: str, name: str) -> RedisLimiter:
    return RedisLimiter(limits, algorithm, backend=client, name=name, deny_cache=False)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("verb", ["decide", "decide_many"])
@pytest.mark.parametrize("fast_limits", ["100/s", "100/s; 1000/min"])
def test_a_faster_limit_never_cuts_the_ttl_a_slower_one_needs(
    redis_client, fresh_name, algorithm, verb, fast_limits
) -> None:
    name = fresh_name()
    slow = _limiter(redis_client, "2/h", algorithm, name)
    fast = _limiter(redis_client, fast_limits, algorithm, name)
    key = slow._schema.key("k")
    try:
        assert [slow.decide("k").allowed for _ in range(3)] == [True, True, False]
        needed = redis_client.pttl(key)
        # fixed_window's hour ends on the clock: it needs whatever is left.
        assert needed > 100
        if verb == "decide":
            assert fast.decide("k").allowed
        else:
            assert all(d.allowed for d in fast.decide_many_decisions(["k", "x", "k"]))
        assert redis_client.pttl(key) >= needed - 100
        # Both limits still see their own state in the one key.
        assert not slow.decide("k").allowed
        assert fast.decide("k", 0).remaining == 100 - (1 if verb == "decide" else 2)
    finally:
        slow.close()
        fast.close()


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_key_of_one_limiter_still_expires_with_its_state(
    redis_client, fresh_name, algorithm
) -> None:
    # The kept expiry is only for keys that hold other limits: alone, a
    # 100/s limiter's key lives about as long as its state.
    limiter = _limiter(redis_client, "100/s", algorithm, fresh_name())
    try:
        assert limiter.decide("k").allowed
        assert 0 < redis_client.pttl(limiter._schema.key("k")) <= 2_000
    finally:
        limiter.close()


def test_the_kept_expiry_without_pexpiretime(disposable_redis, fresh_name) -> None:
    # Redis before 7.0 has no PEXPIRETIME: the scripts read PTTL and TIME.
    # Refusing the command to the user stands in for the older server.
    client = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    try:
        client.acl_setuser("default", enabled=True, commands=["-pexpiretime"])
        for algorithm in ALGORITHMS:
            name = fresh_name()
            slow = _limiter(client, "2/h", algorithm, name)
            fast = _limiter(client, "100/s", algorithm, name)
            key = slow._schema.key("k")
            assert slow.decide("k").allowed
            needed = client.pttl(key)
            assert fast.decide("k").allowed
            assert needed - 100 <= client.pttl(key) <= needed + 100
            slow.close()
            fast.close()
    finally:
        client.close()
