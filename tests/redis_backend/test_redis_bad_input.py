"""A Redis-backed limiter refuses a bad batch as the in-memory one does:
the same error, naming `keys` or `costs`, before anything is decided."""

from __future__ import annotations

import pytest

from ratefuse import KeyedLimiter
from ratefuse.redis import RedisBackend, RedisLimiter


@pytest.mark.parametrize(
    ("keys", "costs"),
    [
        (["a"], 1.5),
        (["a"], "ab"),
        (["a"], [1, 2]),
        (["a"], [1.5]),
        (["a"], [-1]),
        ("ab", None),
        (7, None),
    ],
)
def test_a_bad_batch_is_refused_as_in_memory(
    client, fresh_name, keys: object, costs: object
) -> None:
    local = KeyedLimiter("5/h")
    with pytest.raises((ValueError, TypeError)) as expected:
        local.decide_many(keys, costs=costs)  # type: ignore[arg-type]
    backend = RedisBackend(client, timeout=2.0)
    name = fresh_name()
    limiter = RedisLimiter("5/h", backend=backend, name=name)
    try:
        with pytest.raises(expected.type) as raised:
            limiter.decide_many(keys, costs=costs)  # type: ignore[arg-type]
        assert str(raised.value) == str(expected.value)
        assert limiter.decide("a").remaining == 4  # nothing was decided
    finally:
        backend.close()


def test_one_cost_for_every_key(client, fresh_name) -> None:
    backend = RedisBackend(client, timeout=2.0)
    limiter = RedisLimiter("5/h", backend=backend, name=fresh_name())
    try:
        assert [
            d.remaining for d in limiter.decide_many_decisions(["a", "b"], costs=2)
        ] == [
            3,
            3,
        ]
    finally:
        backend.close()
