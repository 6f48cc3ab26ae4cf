"""decide_many of 1,000 decisions against redis-py's pipeline of 1,000 trivial
EVALSHAs, interleaved round by round in one process on one redis-server.

On a shared 2-vCPU VM the host's load moves a Redis round trip by 2x between
runs, so figures from separate runs do not compare. Here every round runs
each variant once, in turn, so all of them see the same load, and the ratio
of ratefuse to the raw pipeline is taken round by round.

Variants: ``fresh`` (1,000 keys never seen: each creates a Redis key),
``known`` (8 batches of 1,000 keys in rotation, existing in Redis and in the
client's tag cache: the script reads and rewrites their values), ``raw``
(redis-py pipelining ``EVALSHA <return 1> 0``).
``--compare CHUNK`` adds ``fresh`` and ``known`` with a second backend whose
``chunk`` is CHUNK. ``--sequential`` measures single decisions instead:
1,000 a round through the public API (gcra and sliding_window), against
1,000 trivial EVALSHAs by redis-py, one round trip each. Server time per
decision is INFO commandstats' evalsha usec, reset before each round; cpu
is this process's CPU time per decision.

    python benchmarks/redis_batch_interleaved.py [--rounds 300] [--chunk 250]
        [--compare 125] [--sequential]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run from a checkout: the package from its src (built in place), and the
# test suite's redis-server fixtures, shared rather than copied.
from checkout import use_checkout  # noqa: E402

use_checkout(tests=True)

import redis  # noqa: E402

from ratefuse import Rate  # noqa: E402
from ratefuse.redis import RedisBackend, RedisLimiter  # noqa: E402
from redis_servers import RedisServer  # noqa: E402

BATCH = 1000
KNOWN_BATCHES = 8
KNOWN_BURST = 10**6
# Generous: a loaded machine slows the figures instead of falling back.
TIMEOUT = 2.0
WARM_UP = 20


class Variant:
    """`Variant` is one batch of 1,000 decisions to time, and its samples."""

    def __init__(
        self,
        name: str,
        run: Callable[[], object],
        fallbacks: Callable[[], int] = lambda: 0,
    ) -> None:
        self.name = name
        self.run = run
        # Decisions answered locally: a round that timed out would flatter.
        self.fallbacks = fallbacks
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self.server_us: list[float] = []


def ratefuse_variants(backend: RedisBackend, suffix: str) -> list[Variant]:
    """`ratefuse_variants` are the fresh-key and known-key batches on
    ``backend`` (each with its own quota name)."""
    fresh = RedisLimiter("1000000/s", backend=backend, name=f"fresh{suffix}")
    # A key lives as long as its backlog: 1 s more per visit here, so the
    # known keys outlive their rotation, and the burst admits every visit.
    known = RedisLimiter(
        Rate(1, burst=KNOWN_BURST), backend=backend, name=f"known{suffix}"
    )
    counter = iter(range(1 << 62))
    pool = [
        [f"user-{batch}-{key}" for key in range(BATCH)]
        for batch in range(KNOWN_BATCHES)
    ]

    def fresh_batch() -> object:
        index = next(counter)
        return fresh.decide_many_decisions(
            [f"user-{index}-{key}" for key in range(BATCH)]
        )

    def known_batch() -> object:
        return known.decide_many_decisions(pool[next(counter) % KNOWN_BATCHES])

    for keys in pool:
        known.decide_many_decisions(keys)
    return [
        Variant(f"fresh{suffix}", fresh_batch, lambda: fresh.stats().fallbacks),
        Variant(f"known{suffix}", known_batch, lambda: known.stats().fallbacks),
    ]


def sequential_variants(backend: RedisBackend) -> list[Variant]:
    """`sequential_variants` are 1,000 decisions one round trip each, gcra
    and sliding_window, through the public API (the deny cache on, as by
    default; nothing is denied)."""
    variants = []
    for algorithm in ("gcra", "sliding_window"):
        limiter = RedisLimiter(
            "1000000/s", algorithm, backend=backend, name=f"seq-{algorithm}"
        )

        def one_by_one(decide: Callable[[str], object] = limiter.decide) -> object:
            for _ in range(BATCH):
                decide("user")
            return None

        variants.append(
            Variant(
                f"seq-{algorithm}",
                one_by_one,
                lambda limiter=limiter: limiter.stats().fallbacks,
            )
        )
    return variants


def raw_sequential_variant(connection: redis.Redis) -> Variant:
    """`raw_sequential_variant` is 1,000 trivial EVALSHAs by redis-py, one
    round trip each."""
    sha = connection.script_load("return 1")

    def one_by_one() -> object:
        for _ in range(BATCH):
            connection.evalsha(sha, 0)
        return None

    return Variant("raw", one_by_one)


def raw_variant(connection: redis.Redis) -> Variant:
    """`raw_variant` is redis-py pipelining 1,000 trivial EVALSHAs."""
    sha = connection.script_load("return 1")

    def pipeline() -> object:
        with connection.pipeline(transaction=False) as pipe:
            for _ in range(BATCH):
                pipe.evalsha(sha, 0)
            return pipe.execute()

    return Variant("raw", pipeline)


def evalsha_usec(connection: redis.Redis) -> float:
    """`evalsha_usec` is the server's total EVALSHA time since the last
    CONFIG RESETSTAT, in microseconds."""
    stats = connection.info("commandstats").get("cmdstat_evalsha")
    return float(stats["usec"]) if stats else 0.0


def measure(variants: list[Variant], connection: redis.Redis, rounds: int) -> None:
    """`measure` runs every variant once per round, in turn, ``rounds``
    times after a warm-up, without garbage collection while timed; the
    ratio to the raw pipeline pairs each round's samples."""
    for _ in range(WARM_UP):
        for variant in variants:
            variant.run()
    for round_index in range(rounds):
        # Each round starts with the next variant: none always follows the
        # same one (a fresh batch leaves 1,000 keys to expire behind it).
        start = round_index % len(variants)
        for variant in variants[start:] + variants[:start]:
            connection.config_resetstat()
            gc.disable()
            cpu_started = time.process_time()
            started = time.perf_counter()
            variant.run()
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            gc.enable()
            variant.seconds.append(elapsed)
            variant.cpu_seconds.append(cpu)
            variant.server_us.append(evalsha_usec(connection) / BATCH)


def report(variants: list[Variant]) -> None:
    """`report` prints each variant's spread and its round-by-round ratio
    to the raw pipeline."""
    raw = next(variant for variant in variants if variant.name == "raw")
    print(
        f"{'variant':<18}{'median':>8}{'p25':>8}{'p75':>8}{'min':>8}"
        f"{'dec/s':>10}{'vs raw':>8}{'srv us':>8}{'cpu us':>8}   (ms per 1,000)"
    )
    for variant in variants:
        samples = sorted(variant.seconds)
        p25, median, p75 = statistics.quantiles(samples, n=4)
        ratio = statistics.median(
            mine / floor
            for mine, floor in zip(variant.seconds, raw.seconds, strict=True)
        )
        print(
            f"{variant.name:<18}{median * 1e3:8.2f}{p25 * 1e3:8.2f}"
            f"{p75 * 1e3:8.2f}{samples[0] * 1e3:8.2f}"
            f"{BATCH / median:10,.0f}{ratio:8.2f}"
            f"{statistics.median(variant.server_us):8.2f}"
            f"{statistics.median(variant.cpu_seconds) / BATCH * 1e6:8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--chunk", type=int, default=250)
    parser.add_argument("--compare", type=int, default=None, metavar="CHUNK")
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="1,000 decisions one round trip each, against 1,000 raw EVALSHAs",
    )
    options = parser.parse_args()
    server = RedisServer().start()
    backends: list[RedisBackend] = []
    try:
        connection = redis.Redis(host="127.0.0.1", port=server.port)
        if options.sequential:
            backend = RedisBackend(connection, timeout=TIMEOUT)
            backends.append(backend)
            variants = [raw_sequential_variant(connection)]
            variants += sequential_variants(backend)
        else:
            variants = [raw_variant(connection)]
        chunks = [options.chunk]
        if options.compare is not None:
            chunks.append(options.compare)
        for chunk in chunks if not options.sequential else ():
            backend = RedisBackend(connection, timeout=TIMEOUT, chunk=chunk)
            backends.append(backend)
            suffix = f"@{chunk}" if len(chunks) > 1 else ""
            variants[1:1] = ratefuse_variants(backend, suffix)
        measure(variants, connection, options.rounds)
        for variant in variants:
            if variant.fallbacks():
                raise SystemExit(f"{variant.name}: Redis did not answer every decision")
        print(f"{options.rounds} interleaved rounds, redis-server {server.port}")
        report(sorted(variants, key=lambda variant: variant.name))
    finally:
        for backend in backends:
            backend.close()
        server.stop()


if __name__ == "__main__":
    main()
