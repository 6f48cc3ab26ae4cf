"""A Redis-backed limiter's bound methods keep it alive, on both twins of the
lease table: `try_acquire` kept after the limiter itself was dropped still
asks Redis (it used to be the deny cache's compiled call, whose weak
reference to the limiter was dead, and denied every miss without asking),
and a limiter dropped with its methods is freed at once (no cycle)."""

from __future__ import annotations

import gc
import weakref

import pytest

import ratefuse.redis._leasing as leasing
from ratefuse import KeyedLimiter, Limiter
from ratefuse.redis import RedisLimiter


@pytest.fixture
def lease_table(impl, monkeypatch):
    """`lease_table` makes the limiters built in the test use ``impl``'s
    lease table (deny cache and leases)."""
    monkeypatch.setattr(leasing, "_core", impl.module("core._lease"))
    return impl


@pytest.mark.parametrize("options", [{}, {"lease": True}], ids=["deny-cache", "lease"])
def test_a_kept_try_acquire_asks_redis_after_its_limiter_is_dropped(
    lease_table, client, fresh_name, options
) -> None:
    name = fresh_name()
    try_acquire = KeyedLimiter("2/h", backend=client, name=name, **options).try_acquire
    gc.collect()
    assert [try_acquire("k") for _ in range(3)] == [True, True, False]
    # A second limiter on the name sees what the first consumed: the
    # decisions were the fleet's, not a local default.
    other = RedisLimiter("2/h", backend=client, name=name, deny_cache=False)
    assert not other.decide("k", 0).remaining
    other.close()


def test_a_kept_subject_try_acquire_asks_redis(lease_table, client, fresh_name) -> None:
    try_acquire = Limiter("1/h", backend=client, name=fresh_name()).try_acquire
    gc.collect()
    assert [try_acquire(), try_acquire()] == [True, False]


@pytest.mark.parametrize("options", [{}, {"lease": True}], ids=["deny-cache", "lease"])
def test_a_dropped_limiter_is_freed_without_the_cycle_collector(
    lease_table, client, fresh_name, options
) -> None:
    limiter = RedisLimiter("2/h", backend=client, name=fresh_name(), **options)
    try_acquire = limiter.try_acquire
    assert try_acquire("k")
    dropped = weakref.ref(limiter)
    del limiter
    assert dropped() is not None  # the bound method holds it
    del try_acquire
    assert dropped() is None
