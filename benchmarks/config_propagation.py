"""Propagation of a pushed config to a fleet: from `push_config` returning
to every one of 4 processes deciding with the new limits, over 100 pushes,
on a real redis-server and a real etcd on loopback.

Each push changes the limiter "api" to a new rate; each of the 4 follower
processes (tests/config_workers.py, "follow") notes the monotonic time
(CLOCK_MONOTONIC: one clock for every process on a Linux host) at which
"api" first decided with the new version, and the limit it decided with,
which must be the pushed one. A push's propagation is the latest of the 4
times minus the time the push returned (0 when a process applied it before
the pusher saw the reply). The next push waits for all 4.

    python benchmarks/config_propagation.py [--pushes 100] [--kinds redis etcd]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run from a checkout: the package from its src (built in place), and the
# test suite's server fixtures and fleet workers, shared rather than copied.
from checkout import use_checkout  # noqa: E402

use_checkout(tests=True)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
)

from config_fleet_support import SourceServer, Worker  # noqa: E402
from ratefuse.config import push_config  # noqa: E402

FLEET = 4


def document(limit: int) -> bytes:
    return f'[limiters.api]\nrate = "{limit}/m"\n'.encode()


def measure(kind: str, pushes: int) -> list[float]:
    """`measure` is the propagation (seconds) of each of ``pushes``."""
    server = SourceServer(kind).start()
    key = server.key("propagation")
    workers: list[Worker] = []
    store = server.store(key)
    try:
        first = push_config(store, document(1))
        workers = [Worker(server, key, f"bench-{index}") for index in range(FLEET)]
        for worker in workers:
            assert worker.ask(op="wait", version=first, timeout=30)["version"] == first
            worker.send(op="follow", versions=pushes)
        samples = []
        for index in range(pushes):
            limit = index + 2
            version = push_config(store, document(limit))
            returned = time.monotonic()
            latest = returned
            for worker in workers:
                report = worker.reply()
                assert report["version"] == version, (report, version)
                assert report["limit"] == limit, (report, limit)
                latest = max(latest, report["at"])
            samples.append(latest - returned)
        return samples
    finally:
        store.close()
        for worker in workers:
            worker.close()
        server.stop()


def percentile(samples: list[float], fraction: float) -> float:
    """`percentile` by nearest rank: the 99th of 100 samples is the 99th
    smallest."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=100)
    parser.add_argument("--kinds", nargs="+", default=["redis", "etcd"])
    args = parser.parse_args()
    print(f"{FLEET} processes, {args.pushes} pushes; propagation in ms")
    print(f"{'source':<8} {'median':>8} {'p90':>8} {'p99':>8} {'max':>8}")
    for kind in args.kinds:
        samples = [seconds * 1000 for seconds in measure(kind, args.pushes)]
        print(
            f"{kind:<8} {statistics.median(samples):8.2f} "
            f"{percentile(samples, 0.90):8.2f} {percentile(samples, 0.99):8.2f} "
            f"{max(samples):8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
