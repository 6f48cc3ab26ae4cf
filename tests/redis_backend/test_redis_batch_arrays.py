"""`decide_many` on Redis at parity with the in-memory KeyedLimiter's.

The same batches (a numpy int64 id array, a list of mixed keys, one cost
or one per key, repeated keys) go to the in-memory core (compiled and
reference, through `impl`) and to the Redis-backed limiters on a real node
and a real cluster, sync and asyncio, through the classes and through
``KeyedLimiter(..., backend=...)``: the same return types (a numpy bool
array, and a float64 retry_after array beside it on request) and the same
verdicts. ``now=`` is refused before any I/O, naming the field; the list of
Decisions stays as `decide_many_decisions`.
"""

from __future__ import annotations

import asyncio

import numpy
import pytest
import redis.asyncio

from ratefuse import KeyedLimiter
from ratefuse.rates import build_specs, to_rates
from ratefuse.redis import AsyncRedisLimiter, RedisLimiter

SECRET = b"\x01" * 16
LIMITS = "3/h"
IDS = numpy.array([7, 8, 7, 7, 7, -1, 2**62, 8], dtype=numpy.int64)
MIXED = ["alice", b"alice", 5, "alice", "alice", 5, "bob", "alice"]
# IDS' verdicts at cost 1 on a fresh limit of 3.
VERDICTS = [True, True, True, True, False, True, True, True]
COSTS = [1, 2, 0, 1, 2, 3, 4, 1]
# (keys, costs): ids with one cost each, ids with one cost for all, mixed
# keys with costs per key, and an empty batch.
BATCHES = [
    (IDS, None),
    (IDS, 2),
    (MIXED, COSTS),
    (numpy.array(COSTS, dtype=numpy.int64), numpy.array(COSTS, dtype=numpy.int64)),
    ([], None),
]


def in_memory(impl, keys, costs):
    """The in-memory verdicts and retry_after of a fresh core."""
    core = impl.module("engine._keyed").KeyedLimiterCore(
        build_specs(to_rates(LIMITS), "gcra"), 1000, None, SECRET
    )
    return core.decide_many(keys, costs, now=10**12, retry_after=True)


def check(expected, got) -> None:
    """``got`` is ``expected``'s form and verdicts; retry_after agrees to
    the microsecond Redis reports (a fresh key's wait is the same)."""
    allowed, waits = got
    assert isinstance(allowed, numpy.ndarray)
    assert allowed.dtype == numpy.bool_
    assert isinstance(waits, numpy.ndarray)
    assert waits.dtype == numpy.float64
    assert allowed.tolist() == expected[0].tolist()
    assert waits.shape == expected[1].shape
    assert numpy.allclose(waits, expected[1], atol=1e-3)


@pytest.mark.parametrize("facade", [False, True], ids=["class", "facade"])
@pytest.mark.parametrize("where", ["node", "cluster"])
@pytest.mark.parametrize("batch", range(len(BATCHES)))
def test_decide_many_matches_the_in_memory_one(
    impl, request, fresh_name, facade: bool, where: str, batch: int
) -> None:
    keys, costs = BATCHES[batch]
    client = request.getfixturevalue("client" if where == "node" else "cluster_client")
    if facade:
        limiter = KeyedLimiter(LIMITS, backend=client, name=fresh_name())
    else:
        limiter = RedisLimiter(LIMITS, backend=client, name=fresh_name())
    with limiter:
        expected = in_memory(impl, keys, costs)
        check(expected, limiter.decide_many(keys, costs, retry_after=True))
        # Without retry_after: the bool array alone (the keys are spent now).
        alone = limiter.decide_many(keys, costs)
        assert isinstance(alone, numpy.ndarray)
        assert alone.dtype == numpy.bool_
        assert alone.shape == (len(keys),)


def test_decide_many_matches_the_in_memory_one_asyncio(
    impl, redis_node, fresh_name
) -> None:
    keys, costs = IDS, None

    async def main() -> tuple[object, list[object]]:
        client = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        facade = KeyedLimiter(LIMITS, backend=client, name=fresh_name())
        limiter = AsyncRedisLimiter(LIMITS, backend=client, name=fresh_name())
        got = await facade.decide_many(keys, costs, retry_after=True)
        listed = await limiter.decide_many_decisions(keys.tolist(), costs)
        await facade.aclose()
        await limiter.aclose()
        await client.aclose()
        return got, listed

    got, listed = asyncio.run(main())
    expected = in_memory(impl, keys, costs)
    check(expected, got)
    assert [decision.allowed for decision in listed] == expected[0].tolist()


def test_now_is_refused_before_any_io(client, fresh_name) -> None:
    with RedisLimiter(LIMITS, backend=client, name=fresh_name()) as limiter:
        with pytest.raises(ValueError, match="now does not apply"):
            limiter.decide_many(IDS, now=5)
        assert limiter.stats().decisions == 0
        assert limiter.decide_many(IDS, now=None).tolist() == VERDICTS


def test_bad_batches_are_refused_as_in_memory(impl, client, fresh_name) -> None:
    core = impl.module("engine._keyed").KeyedLimiterCore(
        build_specs(to_rates(LIMITS), "gcra"), 1000, None, SECRET
    )
    with RedisLimiter(LIMITS, backend=client, name=fresh_name()) as limiter:
        for keys, costs, error in [
            ("alice", None, TypeError),
            (IDS, [1, 2], ValueError),
            (IDS, 1.5, ValueError),
        ]:
            with pytest.raises(error) as local:
                core.decide_many(keys, costs)
            with pytest.raises(error) as remote:
                limiter.decide_many(keys, costs)
            assert str(remote.value) == str(local.value)
        assert limiter.stats().decisions == 0


def test_the_decisions_form_is_kept(client, fresh_name) -> None:
    with RedisLimiter(LIMITS, backend=client, name=fresh_name()) as limiter:
        decisions = limiter.decide_many_decisions(IDS, 1)
        assert [d.allowed for d in decisions] == VERDICTS
        assert [d.remaining for d in decisions] == [2, 2, 1, 0, 0, 2, 2, 1]
