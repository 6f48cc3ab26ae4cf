"""The hot path under a watched config: try_acquire of a limiter whose
registry follows a Redis or etcd config source, against the same limiter
of a registry that follows nothing, interleaved round by round in one
process so that both see the same load.

A "watched" round starts a ConfigFollower (its source's threads block on
the server between announcements), waits for the version, times the
limiter, and closes the follower; a "plain" round times the limiter of a
registry built from the same document with no source. The order
alternates every round. Reported: median ns per call of each, and the
median of the per-round ratios watched / plain.

    python benchmarks/config_hot_path.py [--rounds 31] [--calls 2000000]
        [--kinds redis etcd]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from checkout import use_checkout  # noqa: E402

use_checkout(tests=True)

from config_fleet_support import SourceServer  # noqa: E402
from ratefuse import IMPLEMENTATION  # noqa: E402
from ratefuse.config import ConfigFollower, Registry, push_config  # noqa: E402
from ratefuse.config._toml import parse_toml  # noqa: E402

DOCUMENT = b'[limiters.api]\nrate = "1000000000/s"\n'


def per_call_ns(limiter: Any, calls: int) -> float:
    acquire = limiter.try_acquire
    started = time.perf_counter_ns()
    for _ in range(calls):
        acquire()
    return (time.perf_counter_ns() - started) / calls


def watched_round(server: SourceServer, key: str, version: int, calls: int) -> float:
    registry = Registry()
    with ConfigFollower(registry, server.source(key, "hot-path")) as follower:
        assert follower.wait_for_version(version, 30) == version
        return per_call_ns(registry.limiter("api"), calls)


def measure(kind: str, rounds: int, calls: int) -> tuple[list[float], list[float]]:
    server = SourceServer(kind).start()
    key = server.key("hot-path")
    try:
        store = server.store(key)
        version = push_config(store, DOCUMENT)
        store.close()
        plain_limiter = Registry(parse_toml(DOCUMENT, "bench")).limiter("api")
        per_call_ns(plain_limiter, calls)  # warm-up
        watched_round(server, key, version, calls)
        plain, watched = [], []
        for index in range(rounds):
            if index % 2:
                watched.append(watched_round(server, key, version, calls))
                plain.append(per_call_ns(plain_limiter, calls))
            else:
                plain.append(per_call_ns(plain_limiter, calls))
                watched.append(watched_round(server, key, version, calls))
        return plain, watched
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=31)
    parser.add_argument("--calls", type=int, default=2_000_000)
    parser.add_argument("--kinds", nargs="+", default=["redis", "etcd"])
    args = parser.parse_args()
    print(
        f"try_acquire ({IMPLEMENTATION} cores), {args.rounds} interleaved rounds "
        f"of {args.calls:,} calls; ns per call"
    )
    print(f"{'source':<8} {'plain':>8} {'watched':>8} {'ratio':>8} {'spread':>15}")
    for kind in args.kinds:
        plain, watched = measure(kind, args.rounds, args.calls)
        ratios = [w / p for w, p in zip(watched, plain, strict=True)]
        print(
            f"{kind:<8} {statistics.median(plain):8.1f} "
            f"{statistics.median(watched):8.1f} {statistics.median(ratios):8.3f} "
            f"{min(ratios):7.3f}-{max(ratios):.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
