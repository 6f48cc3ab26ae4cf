"""``ratefuse bench --redis URL``: decisions against a real Redis, next to a
raw redis-py EVALSHA of a trivial script on the same server (the floor of
any one-round-trip decision), and the peers' Redis backends with --peers.

Each run uses its own limiter name (so its own keys) and removes nothing:
the keys expire on their own within seconds of the run.

Every loop and accuracy target holds its limiter, not only a bound method
of it: a RedisLimiter's ``try_acquire`` may be its deny cache's, which
refers to the limiter weakly, so a dropped limiter would answer "deny"
locally and Redis would never be asked. Each scenario's first decision is
checked to be an admission made in Redis.
"""

from __future__ import annotations

import os
from functools import partial
from itertools import repeat
from typing import Any

from ratefuse.bench.accuracy import LIMIT, PERIOD_S, Target, TryAcquire
from ratefuse.bench.peers import PEERS
from ratefuse.bench.scenarios import Loop, Scenario, calls

BATCH = 1_000
# Far above what one process reaches over Redis, so every decision takes
# the admitting path, as in the local scenarios (the scripts need an
# emission interval of at least 1 us).
FAST = "1000000/s"


def _client(url: str, cluster: bool) -> Any:
    try:
        import redis
        from redis.cluster import RedisCluster
    except ImportError as exc:
        raise SystemExit(
            "--redis needs redis-py: pip install 'ratefuse[redis]'"
        ) from exc
    return RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)


def _run_name(what: str) -> str:
    return f"bench-{what}-{os.getpid()}"


def _sequential_calls(limiter: Any, key: str, n: int) -> None:
    # n decisions on `limiter` (held here, see the module doc).
    calls(partial(limiter.try_acquire, key), n)


def _batch_calls(limiter: Any, keys: list[str], n: int) -> None:
    # n batches of len(keys) decisions on `limiter`.
    decide_many = limiter.decide_many
    for _ in repeat(None, n):
        decide_many(keys)


def _checked(limiter: Any, what: str) -> Any:
    # `limiter`, once its first decision was admitted by Redis.
    before = limiter.stats()
    if not limiter.try_acquire("bench-check"):
        raise SystemExit(f"{what}: the first decision was a denial")
    after = limiter.stats()
    if _round_trips(after) <= _round_trips(before):
        raise SystemExit(f"{what}: the first decision did not reach Redis")
    return limiter


def _round_trips(stats: Any) -> int:
    return int(stats.backend_decisions)


def redis_scenarios(
    url: str, *, cluster: bool, peers: bool
) -> tuple[list[Scenario], list[str]]:
    """`redis_scenarios` is sequential and batched decisions on ``url``, the
    raw EVALSHA floor, and (with ``peers``) the peers' Redis backends."""
    from ratefuse.redis import RedisLimiter

    where = "cluster" if cluster else "redis"
    client = _client(url, cluster)

    def raw_evalsha() -> Loop:
        sha = client.script_load("return 1")
        target = client.get_default_node() if cluster else client
        call = (
            partial(client.evalsha, sha, 1, "{bench}")
            if cluster
            else partial(target.evalsha, sha, 0)
        )
        return partial(calls, call)

    def sequential(algorithm: str) -> Loop:
        limiter = RedisLimiter(
            FAST, algorithm, backend=client, name=_run_name(algorithm)
        )
        return partial(
            _sequential_calls, _checked(limiter, f"{where} {algorithm}"), "subject"
        )

    def batched() -> Loop:
        limiter = RedisLimiter(FAST, backend=client, name=_run_name("batch"))
        keys = [f"user:{index}" for index in range(BATCH)]
        return partial(_batch_calls, _checked(limiter, f"{where} batch"), keys)

    scenarios = [
        Scenario(f"{where} sequential", "raw EVALSHA return 1", "-", raw_evalsha),
        Scenario(f"{where} sequential", "gcra", "cython", partial(sequential, "gcra")),
        Scenario(
            f"{where} sequential",
            "sliding_window",
            "cython",
            partial(sequential, "sliding_window"),
        ),
        Scenario(f"{where} decide_many x{BATCH}", "gcra", "cython", batched, BATCH),
    ]
    missing: list[str] = []
    if peers:
        found, missing = _peer_scenarios(url, where)
        scenarios += found
    return scenarios, missing


def _peer_scenarios(url: str, where: str) -> tuple[list[Scenario], list[str]]:
    scenarios, missing = [], []
    limits_version, throttled_version = PEERS[0].version(), PEERS[2].version()
    if limits_version is None:
        missing.append("limits")
    else:

        def limits_loop() -> Loop:
            from limits import RateLimitItemPerSecond, storage, strategies

            limiter = strategies.FixedWindowRateLimiter(
                storage.storage_from_string(url)
            )
            item = RateLimitItemPerSecond(1_000_000, 1)
            return partial(calls, partial(limiter.hit, item, _run_name("limits")))

        scenarios.append(
            Scenario(
                f"{where} sequential",
                "fixed_window",
                f"limits {limits_version}",
                limits_loop,
            )
        )
    if throttled_version is None:
        missing.append("throttled-py")
    else:

        def throttled_loop() -> Loop:
            from throttled import RedisStore, Throttled, rate_limiter

            throttle = Throttled(
                quota=rate_limiter.per_sec(1_000_000, burst=1_000_000),
                store=RedisStore(server=url),
                using="gcra",
            )
            return partial(calls, partial(throttle.limit, _run_name("throttled")))

        scenarios.append(
            Scenario(
                f"{where} sequential",
                "gcra",
                f"throttled-py {throttled_version}",
                throttled_loop,
            )
        )
    return scenarios, missing


def _server_ns(client: Any) -> int:
    # The server's TIME in ns: the clock a Redis limiter decides on (on a
    # cluster, one node's, as redis-py routes TIME; it may answer per node).
    reply = client.time()
    seconds, micros = next(iter(reply.values())) if isinstance(reply, dict) else reply
    return (int(seconds) * 1_000_000 + int(micros)) * 1_000


def _try_acquire(limiter: Any, key: str) -> bool:
    return bool(limiter.try_acquire(key))


def redis_accuracy_targets(url: str, *, cluster: bool) -> list[Target]:
    """`redis_accuracy_targets` is one fleet quota per algorithm on ``url``,
    shared by the accuracy run's threads."""
    from ratefuse.bench.accuracy import KINDS
    from ratefuse.rates import Rate
    from ratefuse.redis import RedisLimiter

    targets = []
    for algorithm in ("gcra", "fixed_window", "sliding_window", "sliding_log"):

        def make(algorithm: str = algorithm) -> TryAcquire:
            limiter = RedisLimiter(
                Rate(LIMIT, PERIOD_S),
                algorithm,
                backend=_client(url, cluster),
                name=_run_name(f"accuracy-{algorithm}"),
                on_backend_error="raise",
            )
            # The limiter itself is held (see the module doc).
            return partial(_try_acquire, limiter, "subject")

        where = "cluster" if cluster else "redis"
        targets.append(
            Target(
                f"ratefuse {algorithm} ({where})",
                make,
                KINDS[algorithm],
                ours=True,
                local_clock=False,  # windows aligned on the server's clock
                deciding_clock=partial(_server_ns, _client(url, cluster)),
            )
        )
    return targets


def redis_server_time(
    url: str, *, peers: bool, quick: bool
) -> tuple[list[str], list[dict[str, object]]]:
    """`redis_server_time` measures the server's time per decision on the
    single Redis at ``url`` (see :mod:`.redis_server_time`): ratefuse's
    algorithms, a compound of two limits and the minimal script, with
    ``peers`` `limits`' strategies too, interleaved over rounds (1 of
    1,000 decisions when ``quick``, else 3 of 5,000). Returns the table's
    lines and the JSON rows (medians over the rounds)."""
    from ratefuse.bench.redis_server_time import (
        MINIMAL,
        interleaved,
        medians,
        server_time_cases,
    )

    rounds, decisions = (1, 1_000) if quick else (3, 5_000)
    client = _client(url, False)
    try:
        runs = list(
            interleaved(client, server_time_cases(client, peers), decisions, rounds)
        )
    finally:
        client.close()
    figures = medians(runs)
    floor = figures[MINIMAL].server_us
    lines = [
        f"redis server time ({rounds} x {decisions:,} decisions, INFO "
        "commandstats; medians)",
        f"  {'case':32} {'server us':>10} {'x minimal':>10} {'commands':>9} "
        f"{'wall us':>8} {'cpu us':>7}",
    ]
    rows: list[dict[str, object]] = []
    for figure in figures.values():
        lines.append(
            f"  {figure.name:32} {figure.server_us:10.2f} "
            f"{figure.server_us / floor:10.2f} {figure.commands:9.2f} "
            f"{figure.wall_us:8.1f} {figure.cpu_us:7.1f}"
        )
        rows.append(
            {
                "case": figure.name,
                "decisions": figure.decisions * rounds,
                "server_us_per_decision": figure.server_us,
                "x_minimal_script": figure.server_us / floor,
                "commands_per_decision": figure.commands,
                "wall_us_per_decision": figure.wall_us,
                "client_cpu_us_per_decision": figure.cpu_us,
            }
        )
    return lines, rows
