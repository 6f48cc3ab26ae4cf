"""Beyond one round trip: decisions/s per process on one hot, fleet-limited
key through the public ``try_acquire``, in the three modes of a
Redis-backed limiter (real servers on loopback ports):

- exact: every decision is one round trip (``deny_cache=False``);
- deny cache: the key is over its limit, so denials are answered locally
  for their retry_after (the default for gcra and fixed_window);
- leases: units leased from the fleet are spent locally, refilled in the
  background; the key is limited to 1M/s (the most a Redis limit allows),
  so a process asking faster is denied locally while its lease is short.

Run: ``pytest benchmarks/test_bench_leases.py --benchmark-columns=min,median,iqr,ops``.
A round is 1,000 calls (the time per round in us reads as ns per call; ops
x 1,000 is decisions/s). ``extra_info`` holds the Redis commands per 1,000
decisions and the share of decisions admitted. Skipped only when
redis-server is not installed (and failed instead under
RATEFUSE_REQUIRE_REDIS=1).
"""

from __future__ import annotations

import pytest

redis = pytest.importorskip("redis")

from ratefuse import Rate  # noqa: E402
from ratefuse.redis import (  # noqa: E402
    LeaseConfig,
    RedisBackend,
    RedisLimiter,
)

CALLS = 1000


def hot_loop(limiter: RedisLimiter) -> None:
    """One round: 1,000 decisions on the hot key through try_acquire."""
    try_acquire = limiter.try_acquire
    for _ in range(CALLS):
        try_acquire("hot")


def run(benchmark, limiter: RedisLimiter, rounds: int) -> None:
    hot_loop(limiter)  # connect, load the script, take the first lease
    before = limiter.stats()
    benchmark.pedantic(hot_loop, args=(limiter,), rounds=rounds, warmup_rounds=1)
    after = limiter.stats()
    decisions = after.decisions - before.decisions
    commands = after.redis_commands - before.redis_commands
    admitted = (
        after.lease_hits - before.lease_hits
        + after.backend_decisions - before.backend_decisions
    )  # fmt: skip
    benchmark.extra_info["redis_commands_per_1000_decisions"] = round(
        commands / decisions * 1000, 3
    )
    benchmark.extra_info["decisions"] = decisions
    benchmark.extra_info["lease_admitted_share"] = round(
        (after.lease_hits - before.lease_hits) / decisions, 3
    )
    benchmark.extra_info["answered_by_redis_or_lease"] = admitted
    assert after.fallbacks == 0


def test_exact(benchmark, client) -> None:
    benchmark.group = f"hot key ({type(client).__name__})"
    with RedisBackend(client) as backend:
        limiter = RedisLimiter(
            "1000000/s", backend=backend, name="bench-exact", deny_cache=False
        )
        run(benchmark, limiter, rounds=5)


def test_deny_cache(benchmark, client) -> None:
    benchmark.group = f"hot key ({type(client).__name__})"
    with RedisBackend(client) as backend:
        # Over its limit for the whole run: an hour per unit.
        limiter = RedisLimiter("1/h", backend=backend, name="bench-deny")
        run(benchmark, limiter, rounds=200)


def test_leases(benchmark, client) -> None:
    benchmark.group = f"hot key ({type(client).__name__})"
    lease = LeaseConfig(max_units=100_000, lifetime=1.0)
    with RedisBackend(client) as backend:
        limiter = RedisLimiter(
            Rate(1_000_000, 1.0, burst=100_000),
            backend=backend,
            name="bench-lease",
            lease=lease,
        )
        run(benchmark, limiter, rounds=2000)
        limiter.close()


def test_leases_all_admitted(benchmark, client) -> None:
    # A fleet bucket whose burst covers the whole run, so every decision is a
    # lease hit: the admitting path, not the local denial of a drained key.
    benchmark.group = f"hot key ({type(client).__name__})"
    lease = LeaseConfig(max_units=100_000, lifetime=5.0)
    with RedisBackend(client) as backend:
        limiter = RedisLimiter(
            Rate(1_000_000, 1.0, burst=50_000_000),
            backend=backend,
            name="bench-lease-admitted",
            lease=lease,
        )
        run(benchmark, limiter, rounds=2000)
        assert benchmark.extra_info["lease_admitted_share"] == 1.0
        limiter.close()
