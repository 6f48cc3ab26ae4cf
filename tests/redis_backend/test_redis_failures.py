"""Failure handling against real servers that are killed, paused (SIGSTOP)
and restarted: the policy answers within the timeout, the breaker fails
fast once open, a consuming call is never resent after a timeout, and the
limiter recovers when Redis comes back. Time is injected into the breaker,
so no test waits for its wait duration to pass."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import redis

from breaker_support import ManualClock
from ratefuse import BackendError
from ratefuse.breaker import CircuitBreaker, State
from ratefuse.redis import DEFAULT_BREAKER_CONFIG, RedisBackend, RedisLimiter

TIMEOUT = 0.05
# Generous: what matters is that a dead Redis costs about one timeout, not
# several, and that an open breaker costs no I/O at all.
SLACK = 0.5


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_000_000_000)


@pytest.fixture
def node_client(disposable_redis) -> Iterator[redis.Redis]:
    connection = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    yield connection
    connection.close()


def make_limiter(
    client: redis.Redis,
    clock: ManualClock,
    limits: str = "5/h",
    timeout: float = TIMEOUT,
    **policy: object,
) -> RedisLimiter:
    breaker = CircuitBreaker("redis", DEFAULT_BREAKER_CONFIG, clock=clock)
    backend = RedisBackend(client, timeout=timeout, breaker=breaker)
    return RedisLimiter(limits, backend=backend, name="failures", **policy)  # type: ignore[arg-type]


def timed(limiter: RedisLimiter, key: object = "k", cost: int = 1):
    started = time.perf_counter()
    decision = limiter.decide(key, cost)  # type: ignore[arg-type]
    return decision, time.perf_counter() - started


def test_killed_redis_falls_back_locally_then_recovers(
    disposable_redis, node_client, clock
) -> None:
    limiter = make_limiter(node_client, clock, local_share=0.4)
    try:
        assert limiter.decide("k").remaining == 4  # from Redis
        disposable_redis.kill()
        decision, elapsed = timed(limiter)
        assert elapsed < TIMEOUT + SLACK
        assert decision.allowed
        assert decision.limit == 2  # the local 40% of 5
        stats = limiter.stats()
        assert (stats.backend_decisions, stats.local_fallbacks) == (1, 1)
        # The breaker opens within its minimum of calls (3: one success and
        # two failures in its time window); then no I/O at all.
        timed(limiter)
        assert limiter.backend.breaker.state is State.OPEN
        started = time.perf_counter()
        decisions = [limiter.decide("k") for _ in range(100)]
        assert time.perf_counter() - started < SLACK  # 100 timeouts would be 5 s
        assert not decisions[-1].allowed  # the local limit holds: 2 units
        stats = limiter.stats()
        assert stats.breaker_fallbacks == 100
        assert stats.local_fallbacks == stats.fallbacks == 102
        assert limiter.backend.stats().breaker_rejections == 100
        # Redis comes back (empty: no persistence); once the breaker's wait
        # is over, a probe goes through and Redis decides again.
        disposable_redis.start()
        assert limiter.decide("k").limit == 2  # still open: local
        clock.advance(DEFAULT_BREAKER_CONFIG.wait_duration)
        decision = limiter.decide("k")
        assert (decision.limit, decision.remaining) == (5, 4)
        assert limiter.backend.breaker.state is State.CLOSED
        assert limiter.stats().backend_decisions == 2
        # The library went with the restart: loaded again ahead of the call.
        assert limiter.backend.stats().function_loads >= 1
    finally:
        limiter.backend.close()


@pytest.mark.parametrize("policy", ["allow", "deny", "raise"])
def test_policies_answer_for_a_dead_redis(
    disposable_redis, node_client, clock, policy: str
) -> None:
    limiter = make_limiter(node_client, clock, on_backend_error=policy)
    try:
        disposable_redis.kill()
        for _ in range(6):  # before and after the breaker opens
            if policy == "raise":
                with pytest.raises(BackendError):
                    limiter.decide("k")
                with pytest.raises(BackendError):
                    limiter.decide_many_decisions(["a", "b"])
                continue
            decision = limiter.decide("k")
            assert decision.allowed == (policy == "allow")
            assert decision.limit == 5
            if policy == "deny":
                assert decision.retry_after > 0
            assert [d.allowed for d in limiter.decide_many_decisions(["a", "b"])] == [
                policy == "allow"
            ] * 2
        stats = limiter.stats()
        counted = {
            "allow": stats.allow_fallbacks,
            "deny": stats.deny_fallbacks,
            "raise": stats.raised,
        }
        assert counted[policy] == (12 if policy == "raise" else 18)
        assert stats.fallbacks == counted[policy]
        assert stats.breaker_fallbacks > 0
    finally:
        limiter.backend.close()


def test_a_paused_redis_costs_one_timeout_and_no_resend(
    disposable_redis, node_client, clock
) -> None:
    timeout = 0.2
    limiter = make_limiter(
        node_client, clock, "10/h", timeout=timeout, on_backend_error="local"
    )
    try:
        assert limiter.decide("k").remaining == 9
        disposable_redis.pause()
        try:
            decision, elapsed = timed(limiter)
            assert timeout * 0.9 <= elapsed < timeout + SLACK
            assert decision.limit == 10
            assert limiter.stats().local_fallbacks == 1
            assert limiter.backend.stats().timeouts == 1
        finally:
            disposable_redis.resume()
        # The call that timed out reached the server, which may run it once
        # it resumes; it was never sent again (that would leave 6).
        decision = limiter.decide("k")
        assert decision.limit == 10
        assert decision.remaining >= 7
    finally:
        limiter.backend.close()


def test_script_flush_mid_traffic_is_invisible(client, fresh_name) -> None:
    limiter = RedisLimiter("1000000/h", backend=client, name=fresh_name())
    errors: list[BaseException] = []
    done = threading.Event()

    def traffic(worker: int) -> None:
        try:
            for index in range(150):
                assert limiter.try_acquire(f"{worker}-{index % 7}")
                if index % 10 == 0:
                    assert all(
                        d.allowed
                        for d in limiter.decide_many_decisions([worker, index, "x"])
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=traffic, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    flushes = 0
    while any(thread.is_alive() for thread in threads) or flushes < 3:
        client.script_flush()
        client.function_flush()
        flushes += 1
        done.wait(0.002)
    for thread in threads:
        thread.join()
    limiter.close()
    assert not errors
    stats = limiter.stats()
    assert stats.fallbacks == 0
    assert stats.backend_decisions == 4 * (150 + 15 * 3)
    assert limiter.backend.stats().noscript_reloads >= 1
    assert limiter.backend.stats().function_loads >= 1


def test_decide_many_falls_back_per_decision(
    disposable_redis, node_client, clock
) -> None:
    limiter = make_limiter(node_client, clock, local_share=1.0)
    try:
        assert [
            d.remaining for d in limiter.decide_many_decisions(["a", "b", "a"])
        ] == [4, 4, 3]
        disposable_redis.kill()
        decisions = limiter.decide_many_decisions(["a", "b", "a"], [5, 1, 1])
        assert [d.allowed for d in decisions] == [True, True, False]
        assert limiter.stats().local_fallbacks == 3
    finally:
        limiter.backend.close()


def test_a_paused_cluster_node_fails_only_its_decisions(
    redis_cluster, cluster_client, fresh_name
) -> None:
    backend = RedisBackend(cluster_client, timeout=0.2)
    limiter = RedisLimiter(
        "5/h", backend=backend, name=fresh_name(), on_backend_error="local"
    )
    keys = [f"user-{index}" for index in range(60)]
    try:
        assert all(d.remaining == 4 for d in limiter.decide_many_decisions(keys))
        paused = redis_cluster.nodes[0]
        on_paused = [
            key
            for key in keys
            if backend._slots is not None
            and backend._slots.node(
                __import__("redis.crc").crc.key_slot(limiter._schema.key(key))
            )
            == ("127.0.0.1", paused.port)
        ]
        assert 0 < len(on_paused) < len(keys)
        paused.pause()
        try:
            decisions = limiter.decide_many_decisions(keys)
        finally:
            paused.resume()
        for key, decision in zip(keys, decisions, strict=True):
            if key in on_paused:
                assert (decision.limit, decision.remaining) == (5, 4)  # local
            else:
                assert decision.remaining == 3  # Redis
        assert limiter.stats().local_fallbacks == len(on_paused)
        # After the node resumes, Redis decides everything again.
        assert all(d.remaining <= 3 for d in limiter.decide_many_decisions(keys))
    finally:
        backend.close()
