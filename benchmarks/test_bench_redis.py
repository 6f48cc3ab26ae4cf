"""Redis backend: sequential decisions against a raw redis-py EVALSHA of a
trivial script on the same server, and decide_many batches, on a single
Redis and on a 3-primary cluster (real servers on loopback ports).

Run: ``pytest benchmarks/test_bench_redis.py --benchmark-columns=min,median,iqr,ops``.
Sequential rounds are one decision (ops is decisions/s); batch rounds are
1,000 decisions (ops x 1,000 is decisions/s). ``extra_info`` holds the
client CPU per decision in microseconds. Skipped only when redis-server is
not installed (and failed instead under RATEFUSE_REQUIRE_REDIS=1).

Separate runs do not compare on a shared VM; for decide_many against the
raw pipeline interleaved round by round, run
``python benchmarks/redis_batch_interleaved.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

redis = pytest.importorskip("redis")

from ratefuse import Rate  # noqa: E402
from ratefuse.redis import RedisBackend, RedisLimiter  # noqa: E402

BATCH = 1000
# Seconds per round trip before a decision falls back: generous, so that a
# loaded machine slows the figures down instead of failing the run.
TIMEOUT = 2.0


def run(benchmark, function: Callable[[], object], decisions: int, rounds: int) -> None:
    """Benchmarks ``function`` and records client CPU per decision."""
    cpu = [0.0, 0]

    def timed() -> None:
        started = time.process_time()
        function()
        cpu[0] += time.process_time() - started
        cpu[1] += 1

    function()  # connect, load the script, read the slot map
    benchmark.pedantic(timed, rounds=rounds, warmup_rounds=min(rounds, 50))
    benchmark.extra_info["decisions_per_round"] = decisions
    benchmark.extra_info["client_cpu_us_per_decision"] = round(
        cpu[0] / cpu[1] / decisions * 1e6, 2
    )


def test_raw_evalsha(benchmark, client) -> None:
    """The baseline: redis-py EVALSHA of ``return 1`` (keyless: any node)."""
    benchmark.group = f"sequential ({type(client).__name__})"
    target = (
        client
        if isinstance(client, redis.Redis)
        else client.get_default_node().redis_connection
    )
    sha = target.script_load("return 1")
    run(benchmark, lambda: target.evalsha(sha, 0), 1, 3000)


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
def test_decide(benchmark, client, algorithm: str) -> None:
    benchmark.group = f"sequential ({type(client).__name__})"
    with RedisBackend(client, timeout=TIMEOUT) as backend:
        limiter = RedisLimiter("1000000/s", algorithm, backend=backend, name="bench")
        run(benchmark, lambda: limiter.decide("user"), 1, 3000)
        assert limiter.stats().fallbacks == 0


def test_raw_evalsha_pipeline(benchmark, node) -> None:
    """The batch baseline: 1,000 trivial EVALSHAs pipelined by redis-py."""
    benchmark.group = "batch of 1,000"
    connection = redis.Redis(host="127.0.0.1", port=node.port)
    sha = connection.script_load("return 1")

    def pipeline() -> None:
        with connection.pipeline(transaction=False) as pipe:
            for _ in range(BATCH):
                pipe.evalsha(sha, 0)
            pipe.execute()

    run(benchmark, pipeline, BATCH, 200)
    connection.close()


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
def test_decide_many(benchmark, client, algorithm: str) -> None:
    benchmark.group = "batch of 1,000"
    rounds = iter(range(1 << 30))
    with RedisBackend(client, timeout=TIMEOUT) as backend:
        limiter = RedisLimiter("1000000/s", algorithm, backend=backend, name="bench")

        def batch() -> None:
            # Fresh keys every round: no key is in the schema's cache.
            index = next(rounds)
            limiter.decide_many_decisions(
                [f"user-{index}-{key}" for key in range(BATCH)]
            )

        run(benchmark, batch, BATCH, 200)
        assert limiter.stats().fallbacks == 0


@pytest.mark.parametrize("algorithm", ["gcra", "sliding_window"])
def test_decide_many_known_keys(benchmark, client, algorithm: str) -> None:
    # The steady state of a service: the same users come back, so their keys
    # exist in Redis (no key to create, none to expire) and their tags are in
    # the client's cache (8,192 keys). 8 batches of 1,000 distinct keys, in
    # rotation, under limits that admit every visit and whose keys outlive
    # the rotation (a key lives as long as its state says anything: gcra's
    # backlog grows by 1 s a visit, a window lasts a minute).
    benchmark.group = "batch of 1,000"
    pool = [[f"user-{batch}-{key}" for key in range(BATCH)] for batch in range(8)]
    rounds = iter(range(1 << 30))
    lasting = Rate(1, burst=10**6) if algorithm == "gcra" else Rate(10**5, 60.0)
    with RedisBackend(client, timeout=TIMEOUT) as backend:
        limiter = RedisLimiter(lasting, algorithm, backend=backend, name="known")
        for keys in pool:
            limiter.decide_many_decisions(keys)

        def batch() -> None:
            limiter.decide_many_decisions(pool[next(rounds) % len(pool)])

        run(benchmark, batch, BATCH, 200)
        assert limiter.stats().fallbacks == 0
        assert all(
            decision.allowed for decision in limiter.decide_many_decisions(pool[0])
        )
        assert client.exists(limiter._schema.key(pool[1][0]))


def test_redis_down(benchmark, node) -> None:
    """A paused Redis (SIGSTOP): the first decisions wait for the timeout
    (recorded in extra_info), then the backend breaker opens and decisions
    return by policy at once (the benchmarked rounds)."""
    timeout = 0.05
    connection = redis.Redis(host="127.0.0.1", port=node.port)
    backend = RedisBackend(connection, timeout=timeout)
    limiter = RedisLimiter("1000/s", backend=backend, name="bench-down")
    limiter.try_acquire("warm-up")  # connect and load the script first
    node.pause()
    try:
        before_open = []
        for _ in range(20):
            started = time.perf_counter()
            limiter.try_acquire("subject")
            before_open.append(time.perf_counter() - started)
            if limiter.stats().breaker_fallbacks:
                break  # the breaker is open: no more timeouts
        benchmark.pedantic(
            lambda: limiter.try_acquire("subject"), rounds=2000, warmup_rounds=10
        )
        benchmark.extra_info["timeout_ms"] = timeout * 1e3
        benchmark.extra_info["slowest_before_breaker_opened_ms"] = round(
            max(before_open) * 1e3, 2
        )
        benchmark.extra_info["decisions_before_breaker_opened"] = len(before_open)
    finally:
        node.resume()
        limiter.close()
        backend.close()
        connection.close()
