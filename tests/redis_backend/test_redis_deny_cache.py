"""The deny cache against real servers: it never denies what the fleet would
admit, on a single node and on the cluster.

- Differential, injected time: the same trace of (time step, cost) goes to
  two keys, one decided by the exact script every time, the other through
  the deny cache (the script only when the cache does not answer). Denials
  change no state (gcra, fixed_window), so both keys stay identical and
  every decision must agree; a cached retry_after never exceeds the exact
  one.
- Through the public limiter, real time: whenever the cache denies, the
  fleet is asked right after (cost 0, through a second limiter without
  cache) and must deny that cost too; time and admissions only push a
  denial later, so the later answer bounds the cached one.
"""

from __future__ import annotations

import asyncio
import random
import time

import pytest
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratefuse import KeyedLimiter, RateLimitExceeded
from ratefuse.rates import build_specs, to_rates
from ratefuse.redis import AsyncRedisLimiter, RedisLimiter
from ratefuse.redis._leasing import LocalAnswers

BASE_US = 4_000_000_000_000_000  # keys expire by the injected clock: 2096
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
CASES = [("gcra", "5/100ms"), ("fixed_window", "6/100ms"), ("gcra", "3/10ms; 8/s")]
STEPS = st.lists(
    st.tuples(
        st.one_of(st.just(0), st.integers(1, 40_000), st.integers(90_000, 200_000)),
        st.integers(0, 9),
    ),
    min_size=1,
    max_size=40,
)


@pytest.fixture(params=["node", "cluster"])
def backend(request):
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.mark.parametrize(("algorithm", "limits"), CASES)
def test_cached_denials_match_the_exact_script(
    backend, fresh_name, algorithm, limits
) -> None:
    store = backend.bind(build_specs(to_rates(limits), algorithm), fresh_name())
    now_us = [BASE_US]

    @EXAMPLES
    @given(STEPS)
    def check(trace: list[tuple[int, int]]) -> None:
        answers = LocalAnswers(
            store.binding, None, 100, lambda: now_us[0] * 1000, None, None
        )
        exact_key, cached_key = f"exact-{now_us[0]}", f"cached-{now_us[0]}"
        hits = 0
        for step, cost in trace:
            now_us[0] += step
            exact = store.decide(exact_key, cost, now_us[0])
            local = answers.local(cached_key, cost, now_us[0] * 1000)
            if local is None:
                verdict = store.decide_raw(cached_key, cost, now_us[0])
                answers.remember(cached_key, cost, verdict, now_us[0] * 1000)
                decision = store.binding.decision(verdict)
                assert decision == exact
            else:
                hits += 1
                assert not exact.allowed, (step, cost, exact)
                assert 0 < local.retry_after <= exact.retry_after
        now_us[0] += 10**9  # the next example starts on fresh time
        assert answers.table.stats()["denials"] == hits

    check()


@pytest.mark.parametrize(("algorithm", "limits"), CASES[:2])
def test_the_public_limiter_never_denies_what_the_fleet_admits(
    client, fresh_name, algorithm, limits
) -> None:
    name = fresh_name()
    rng = random.Random(6)
    with (
        RedisLimiter(limits, algorithm, backend=client, name=name) as cached,
        RedisLimiter(
            limits, algorithm, backend=client, name=name, deny_cache=False
        ) as fleet,
    ):
        hits = checked = 0
        for _ in range(600):
            cost = rng.choice((1, 1, 1, 2, 3))
            before = time.monotonic()
            decision = cached.decide("hot", cost)
            if cached.stats().deny_cache_hits == hits:
                continue
            hits += 1
            assert not decision.allowed
            # The cache claims the fleet denies until before + retry_after
            # at least; the fleet's answer is judged if it came before that.
            answer = fleet.decide("hot", 0)
            if time.monotonic() < before + decision.retry_after:
                checked += 1
                assert answer.remaining < cost, (cost, decision, answer)
        stats = cached.stats()
        # The cache answered some, and saved their round trips.
        assert checked > hits // 2 > 0
        assert stats.redis_commands == stats.backend_decisions == 600 - hits
        fleet_stats = fleet.stats()
        assert fleet_stats.deny_cache_hits == 0
        assert fleet_stats.redis_commands == fleet_stats.backend_decisions == hits


def test_a_cached_denial_carries_what_is_left_of_retry_after(
    client, fresh_name
) -> None:
    local_ns = [10**12]
    with RedisLimiter(
        "2/h", backend=client, name=fresh_name(), clock=lambda: local_ns[0]
    ) as limiter:
        assert limiter.try_acquire("k", 2)
        first = limiter.decide("k")  # from Redis: cached from here
        assert not first.allowed
        local_ns[0] += 600 * 10**9  # 10 minutes later on the local clock
        second = limiter.decide("k", 2)
        assert not second.allowed
        assert second.retry_after == pytest.approx(first.retry_after - 600, abs=0.01)
        assert limiter.try_acquire("k", 3) is False
        assert limiter.decide("k", 0).allowed  # below the cached cost: asks
        stats = limiter.stats()
        assert (stats.deny_cache_hits, stats.redis_commands) == (2, 3)
        local_ns[0] += 2000 * 10**9  # past the cached retry_after: asks again
        limiter.decide("k")
        assert limiter.stats().redis_commands == 4


def test_the_cache_is_bounded(client, fresh_name) -> None:
    with RedisLimiter(
        "1/h", backend=client, name=fresh_name(), cache_max_keys=3
    ) as limiter:
        for key in range(5):
            limiter.decide(key)
            assert not limiter.decide(key).allowed
        assert limiter.stats().cache_evictions == 2
        assert not limiter.decide(0).allowed  # evicted: Redis says so
        assert limiter.stats().deny_cache_hits == 0


def test_a_cost_above_the_capacity_never_waits_on_a_cached_denial(
    client, fresh_name
) -> None:
    # A cached denial of a smaller cost must not answer a cost the fleet can
    # never admit with what is left of its gate: retry_after is inf, so
    # acquire raises at once instead of sleeping half an hour first.
    with RedisLimiter("2/h", backend=client, name=fresh_name()) as limiter:
        assert limiter.try_acquire("k", 2)
        assert 0 < limiter.decide("k").retry_after < float("inf")  # cached
        decision = limiter.decide("k", 3)
        assert not decision.allowed
        assert decision.retry_after == float("inf")
        assert limiter.try_acquire("k", 3) is False
    keyed = KeyedLimiter(
        "2/h", backend=client, name=fresh_name(), sleep=_no_sleep, deny_cache=True
    )
    try:
        keyed.acquire("k", 2)
        assert not keyed.decide("k").allowed  # cached
        with pytest.raises(RateLimitExceeded) as raised:
            keyed.acquire("k", 3)
        assert raised.value.decision.retry_after == float("inf")
    finally:
        keyed.close()


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"acquire slept {seconds} s")


def test_reset_forgets_the_cached_denial(client, fresh_name) -> None:
    with RedisLimiter("1/h", backend=client, name=fresh_name()) as limiter:
        assert limiter.try_acquire("k")
        assert not limiter.try_acquire("k")
        limiter.reset("k")
        assert limiter.try_acquire("k")


@pytest.mark.parametrize(
    ("arguments", "error", "field"),
    [
        ({"algorithm": "sliding_window", "deny_cache": True}, ValueError, "deny_cache"),
        ({"algorithm": "sliding_log", "deny_cache": True}, ValueError, "deny_cache"),
        ({"deny_cache": "yes"}, ValueError, "deny_cache"),
        ({"cache_max_keys": 0}, ValueError, "cache_max_keys"),
        ({"cache_max_keys": 0, "deny_cache": False}, ValueError, "cache_max_keys"),
        ({"cache_max_keys": 2.5}, ValueError, "cache_max_keys"),
        ({"clock": 5}, TypeError, "clock"),
    ],
)
def test_bad_arguments_name_the_field(client, arguments, error, field) -> None:
    with pytest.raises(error, match=field):
        RedisLimiter("1/s", backend=client, name="bad", **arguments)


@pytest.mark.parametrize("algorithm", ["sliding_window", "sliding_log"])
def test_the_cache_is_off_by_default_where_it_is_not_exact(
    client, fresh_name, algorithm
) -> None:
    with RedisLimiter("1/h", algorithm, backend=client, name=fresh_name()) as limiter:
        assert limiter.try_acquire("k")
        assert not limiter.try_acquire("k")
        assert not limiter.try_acquire("k")
        assert limiter.stats().deny_cache_hits == 0


@pytest.mark.parametrize("key", [1.5, None, ["k"]])
def test_bad_keys_still_raise(client, fresh_name, key) -> None:
    with (
        RedisLimiter("1/h", backend=client, name=fresh_name()) as limiter,
        pytest.raises(TypeError, match="key"),
    ):
        limiter.try_acquire(key)


def test_bad_costs_still_raise(client, fresh_name) -> None:
    with RedisLimiter("1/h", backend=client, name=fresh_name()) as limiter:
        for cost in (-1, 1.5, "1"):
            with pytest.raises(ValueError, match="cost"):
                limiter.try_acquire("k", cost)


def test_the_async_limiter_caches_denials(redis_node, fresh_name) -> None:
    async def main() -> tuple[list[bool], int, int]:
        client = redis.asyncio.Redis(host="127.0.0.1", port=redis_node.port)
        async with AsyncRedisLimiter(
            "2/h", backend=client, name=fresh_name()
        ) as limiter:
            answers = [await limiter.try_acquire("k") for _ in range(5)]
            stats = limiter.stats()
        await client.aclose()
        return answers, stats.deny_cache_hits, stats.redis_commands

    answers, hits, commands = asyncio.run(main())
    assert answers == [True, True, False, False, False]
    assert (hits, commands) == (2, 3)
