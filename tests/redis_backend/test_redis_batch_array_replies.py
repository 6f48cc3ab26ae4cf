"""decide_many's arrays are read straight from the replies (issue 15): the
same verdicts and waits as the Decisions of decide_many_decisions, and a
batch with failures answered by the policy, as before."""

from __future__ import annotations

import math

import numpy
import pytest
import redis

from ratefuse.redis import RedisBackend, RedisLimiter


def test_arrays_agree_with_the_decisions(client, fresh_name) -> None:
    # Twin limiters with the same history: one answers in arrays, the other
    # in Decisions. Costs above the capacity wait forever (inf).
    keys = [f"k{index % 7}" for index in range(60)]
    costs = [(index % 5) for index in range(60)]
    backend = RedisBackend(client, timeout=5.0)
    try:
        arrays = RedisLimiter("3/h", backend=backend, name=fresh_name())
        listed = RedisLimiter("3/h", backend=backend, name=fresh_name())
        allowed, waits = arrays.decide_many(keys, costs, retry_after=True)
        decisions = listed.decide_many_decisions(keys, costs)
        assert allowed.tolist() == [decision.allowed for decision in decisions]
        assert waits.tolist() == [decision.retry_after for decision in decisions]
        assert math.inf in waits.tolist()
        assert max(wait for wait in waits.tolist() if wait != math.inf) > 0
        assert arrays.stats().fallbacks == 0
    finally:
        backend.close()


@pytest.mark.parametrize(("policy", "verdict"), [("allow", True), ("deny", False)])
def test_a_failed_batch_is_answered_by_the_policy(
    disposable_redis, policy: str, verdict: bool
) -> None:
    connection = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    backend = RedisBackend(connection, timeout=1.0)
    try:
        limiter = RedisLimiter(
            "3/h", backend=backend, name="failed", on_backend_error=policy
        )
        assert limiter.decide_many(["a", "b"]).tolist() == [True, True]
        disposable_redis.stop()
        allowed, waits = limiter.decide_many(["a", "b", "c"], retry_after=True)
        assert allowed.dtype == numpy.bool_
        assert allowed.tolist() == [verdict] * 3
        assert waits.shape == (3,)
        assert limiter.stats().fallbacks == 3
    finally:
        backend.close()
        connection.close()
