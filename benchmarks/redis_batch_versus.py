"""decide_many of 1,000 keys by two builds of ratefuse (this checkout and
another, e.g. main) against redis-py's pipeline of 1,000 trivial EVALSHAs,
interleaved round by round on one redis-server.

Each build runs in a worker process of its own (its ``src`` first on the
path, its extensions built in place), driven line by line over a pipe, so
that both builds and the raw pipeline share every round's load; the order
rotates each round. Variants per build: ``fresh`` (1,000 keys never seen)
and ``known`` (8 batches of 1,000 existing keys in rotation); ``floor``
is the server's least work for 1,000 new keys, a script that only stores
each (SET with PXAT), 4 pipelined calls of 250 keys. Per variant: median
wall ms per 1,000 (p25-p75), decisions/s, the per-round ratio to the raw
pipeline, to the floor and to the other build's same variant, the server's
EVALSHA usec per key (INFO commandstats, reset before each sample) and the
worker's CPU us per key.

    python benchmarks/redis_batch_versus.py --other /work/wt-r4-base
        [--rounds 200] [--only fresh]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1000
CHUNK = 250
KNOWN_BATCHES = 8
# Stores each key as a new ratefuse key would be stored, and nothing else.
FLOOR_SCRIPT = """
local now = redis.call('TIME')
local at = now[1] * 1000 + 1000
for k = 1, #KEYS do
  redis.call('SET', KEYS[k], 'g 1700000000000000', 'PXAT', at)
end
return 1
"""
WARM_UP = 10


def worker(port: int, name: str) -> None:
    """`worker` serves one build: reads a variant name per line, runs one
    batch of it and writes "seconds cpu_seconds fallbacks"."""
    import redis

    from ratefuse import Rate
    from ratefuse.redis import RedisBackend, RedisLimiter

    connection = redis.Redis(host="127.0.0.1", port=port)
    backend = RedisBackend(connection, timeout=2.0)
    fresh = RedisLimiter("1000000/s", backend=backend, name=f"fresh-{name}")
    known = RedisLimiter(Rate(1, burst=10**6), backend=backend, name=f"known-{name}")
    pool = [[f"user-{b}-{k}" for k in range(BATCH)] for b in range(KNOWN_BATCHES)]
    for keys in pool:
        known.decide_many(keys)
    for counter, line in enumerate(sys.stdin, 1):
        if line.strip() == "fresh":
            keys = [f"user-{counter}-{k}" for k in range(BATCH)]
            limiter = fresh
        else:
            keys = pool[counter % KNOWN_BATCHES]
            limiter = known
        gc.disable()
        cpu_started = time.process_time()
        started = time.perf_counter()
        limiter.decide_many(keys)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        gc.enable()
        fallbacks = fresh.stats().fallbacks + known.stats().fallbacks
        print(f"{elapsed} {cpu} {fallbacks}", flush=True)


class Build:
    """`Build` is one checkout's worker process."""

    def __init__(self, label: str, tree: Path, port: int) -> None:
        self.label = label
        environment = dict(os.environ, PYTHONPATH=str(tree / "src"))
        self.process = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                str(port),
                label,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
            cwd=tree,
        )

    def run(self, variant: str) -> tuple[float, float]:
        """`run` is one batch's (seconds, cpu seconds)."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(variant + "\n")
        self.process.stdin.flush()
        elapsed, cpu, fallbacks = self.process.stdout.readline().split()
        if int(fallbacks):
            raise SystemExit(f"{self.label}: Redis did not answer every decision")
        return float(elapsed), float(cpu)

    def stop(self) -> None:
        """`stop` ends the worker (closing its stdin) and waits for it."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, help="another checkout (required)")
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--only", choices=("fresh", "known"), default=None)
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        worker(int(options.worker[0]), options.worker[1])
        return
    if options.other is None:
        parser.error("--other is required")
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.insert(1, str(ROOT / "tests"))
    import redis

    from redis_servers import RedisServer

    server = RedisServer().start()
    builds: list[Build] = []
    try:
        connection = redis.Redis(host="127.0.0.1", port=server.port)
        sha = connection.script_load("return 1")

        def raw() -> tuple[float, float]:
            cpu_started = time.process_time()
            started = time.perf_counter()
            with connection.pipeline(transaction=False) as pipe:
                for _ in range(BATCH):
                    pipe.evalsha(sha, 0)
                pipe.execute()
            return time.perf_counter() - started, time.process_time() - cpu_started

        # The server's floor for a new key: a script that only stores it
        # (SET with PXAT, as ratefuse's does), 4 calls of 250 pipelined.
        floor_sha = connection.script_load(FLOOR_SCRIPT)
        floor_rounds = itertools.count()

        def floor() -> tuple[float, float]:
            index = next(floor_rounds)
            calls = [
                [b"floor:{%d-%d}:%d" % (index, call, key) for key in range(CHUNK)]
                for call in range(BATCH // CHUNK)
            ]
            cpu_started = time.process_time()
            started = time.perf_counter()
            with connection.pipeline(transaction=False) as pipe:
                for keys in calls:
                    pipe.evalsha(floor_sha, len(keys), *keys)
                pipe.execute()
            return time.perf_counter() - started, time.process_time() - cpu_started

        builds = [
            Build("this", ROOT, server.port),
            Build("other", options.other.resolve(), server.port),
        ]
        kinds = [options.only] if options.only else ["fresh", "known"]
        runs = {"raw": raw, "floor": floor}
        for build in builds:
            for kind in kinds:
                runs[f"{kind}@{build.label}"] = lambda build=build, kind=kind: (
                    build.run(kind)
                )
        samples: dict[str, list[tuple[float, float, float]]] = {n: [] for n in runs}
        names = list(runs)
        for round_index in range(WARM_UP + options.rounds):
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                connection.config_resetstat()
                gc.disable()
                elapsed, cpu = runs[name]()
                gc.enable()
                stats = connection.info("commandstats").get("cmdstat_evalsha")
                server_us = float(stats["usec"]) / BATCH if stats else 0.0
                if round_index >= WARM_UP:
                    samples[name].append((elapsed, cpu, server_us))
        report(samples, options.rounds, options.other)
    finally:
        for build in builds:
            build.stop()
        server.stop()


def report(
    samples: dict[str, list[tuple[float, float, float]]], rounds: int, other: Path
) -> None:
    """`report` prints each variant's spread and its per-round ratios."""
    print(f"{rounds} interleaved rounds; other = {other}")
    print(
        f"{'variant':<14}{'median':>8}{'p25':>8}{'p75':>8}{'dec/s':>10}"
        f"{'vs raw':>8}{'vs floor':>9}{'vs other':>9}{'srv us':>8}{'cpu us':>8}"
        "   (ms per 1,000)"
    )
    raw = [sample[0] for sample in samples["raw"]]
    least = [sample[0] for sample in samples["floor"]]
    for name, got in samples.items():
        seconds = [sample[0] for sample in got]
        p25, median, p75 = statistics.quantiles(seconds, n=4)
        versus_raw = statistics.median(
            mine / base for mine, base in zip(seconds, raw, strict=True)
        )
        versus_floor = statistics.median(
            mine / base for mine, base in zip(seconds, least, strict=True)
        )
        kind, _, label = name.partition("@")
        versus_other = "-"
        if label == "this":
            theirs = [sample[0] for sample in samples[f"{kind}@other"]]
            ratio = statistics.median(
                mine / base for mine, base in zip(seconds, theirs, strict=True)
            )
            versus_other = f"{ratio:.3f}"
        print(
            f"{name:<14}{median * 1e3:8.2f}{p25 * 1e3:8.2f}{p75 * 1e3:8.2f}"
            f"{BATCH / median:10,.0f}{versus_raw:8.3f}{versus_floor:9.3f}"
            f"{versus_other:>9}"
            f"{statistics.median(s[2] for s in got):8.2f}"
            f"{statistics.median(s[1] for s in got) / BATCH * 1e6:8.2f}"
        )


if __name__ == "__main__":
    main()
