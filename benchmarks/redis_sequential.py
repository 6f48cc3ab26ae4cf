"""A sequential decision through the public API (RedisLimiter.try_acquire
on one key, one round trip each) against redis-py's EVALSHA of a trivial
script and of the minimal stateful script, interleaved round by round on
one redis-server, on a quiet machine and with a CPU hog beside it.

Every round times ``--calls`` try_acquire calls and as many raw EVALSHAs
of ``return 1`` (no keys: "trivial") and of the minimal TIME+GET+SET(PX)
script on one key (:data:`ratefuse.bench.redis_server_time.MINIMAL_SCRIPT`:
"minimal", the least an exact decision on the server's clock does), in
turn (the order rotates), and their ratios are taken round by round: the
host's load moves a round trip by 2x between runs, and within a round all
see the same load. minimal / trivial is the floor any exact decision
meets; try_acquire / minimal is what ratefuse adds to it (the client's
work and the decision's own logic on the server). The "hog" condition
starts ``python -c "while True: pass"`` beside it (pinned to the CPU this
process runs on with ``--pin``) and stops it by pid at the end. Per
condition: the median and p25-p75 of the per-round ratios, each side's
median wall time per call, the server's EVALSHA and FCALL usec per call
(INFO commandstats) and this process's CPU per call.

The limit admits every call (1,000,000/s, gcra by default): a denial
would be answered by the deny cache without a round trip.

    python benchmarks/redis_sequential.py [--rounds 200] [--calls 200]
        [--algorithm gcra] [--pin] [--only quiet|hog]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run from a checkout: the package from its src (built in place), and the
# test suite's redis-server fixture.
from checkout import use_checkout  # noqa: E402

use_checkout(tests=True)

import redis  # noqa: E402

from ratefuse.bench.redis_server_time import MINIMAL_SCRIPT  # noqa: E402
from ratefuse.redis import RedisBackend, RedisLimiter  # noqa: E402
from redis_servers import RedisServer  # noqa: E402

# Generous: a loaded machine slows the figures instead of falling back.
TIMEOUT = 2.0
WARM_UP_ROUNDS = 10


@dataclass
class Side:
    """`Side` is one way of making ``calls`` sequential round trips, and
    its samples per round (per call)."""

    name: str
    run: Callable[[int], object]
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    server_us: list[float] = field(default_factory=list)


def raw_side(connection: redis.Redis) -> Side:
    """`raw_side` is redis-py's EVALSHA of ``return 1``, one at a time."""
    sha = connection.script_load("return 1")
    evalsha = connection.evalsha

    def run(calls: int) -> object:
        for _ in range(calls):
            evalsha(sha, 0)
        return None

    return Side("raw evalsha", run)


def minimal_side(connection: redis.Redis) -> Side:
    """`minimal_side` is redis-py's EVALSHA of the minimal stateful script
    (TIME, GET, SET with PX) on one key, one at a time."""
    sha = connection.script_load(MINIMAL_SCRIPT)
    evalsha = connection.evalsha
    key = f"bench-sequential-minimal-{os.getpid()}"

    def run(calls: int) -> object:
        for _ in range(calls):
            evalsha(sha, 1, key)
        return None

    return Side("minimal evalsha", run)


def ratefuse_side(limiter: RedisLimiter) -> Side:
    """`ratefuse_side` is ``limiter.try_acquire`` on one key."""
    try_acquire = limiter.try_acquire

    def run(calls: int) -> object:
        for _ in range(calls):
            if not try_acquire("user"):
                raise SystemExit("a try_acquire was denied: the limit is too low")
        return None

    return Side("try_acquire", run)


def script_usec(connection: redis.Redis) -> float:
    """`script_usec` is the server's EVALSHA and FCALL time since the last
    CONFIG RESETSTAT, in microseconds (ratefuse decides through FCALL
    where the server has Functions)."""
    stats = connection.info("commandstats")
    return sum(
        float(stats[name]["usec"])
        for name in ("cmdstat_evalsha", "cmdstat_fcall")
        if name in stats
    )


def measure(
    sides: list[Side], connection: redis.Redis, rounds: int, calls: int
) -> None:
    """`measure` runs each side once per round, rotating which goes first
    (and reversing the order every other round), without garbage
    collection while timed."""
    for round_index in range(WARM_UP_ROUNDS + rounds):
        shift = round_index % len(sides)
        order = sides[shift:] + sides[:shift]
        if (round_index // len(sides)) % 2:
            order.reverse()
        for side in order:
            connection.config_resetstat()
            gc.disable()
            cpu_started = time.process_time()
            started = time.perf_counter()
            side.run(calls)
            elapsed = time.perf_counter() - started
            cpu = time.process_time() - cpu_started
            gc.enable()
            if round_index >= WARM_UP_ROUNDS:
                side.seconds.append(elapsed / calls)
                side.cpu_seconds.append(cpu / calls)
                side.server_us.append(script_usec(connection) / calls)


@contextmanager
def cpu_hog(pin: bool) -> Iterator[int]:
    """`cpu_hog` runs a busy Python loop beside the benchmark (on this
    process's CPU when ``pin``) and stops it by pid; yields the pid."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        if pin:
            cpu = os.sched_getaffinity(0)
            mine = min(cpu)
            os.sched_setaffinity(0, {mine})
            os.sched_setaffinity(hog.pid, {mine})
        yield hog.pid
    finally:
        hog.kill()
        hog.wait()
        if pin:
            os.sched_setaffinity(0, cpu)


def ratios(ours: Side, theirs: Side) -> list[float]:
    """`ratios` are ``ours`` / ``theirs`` wall time per call, round by
    round, sorted."""
    return sorted(
        mine / other for mine, other in zip(ours.seconds, theirs.seconds, strict=True)
    )


def report(condition: str, raw: Side, minimal: Side, mine: Side) -> None:
    """`report` prints one condition's per-round ratios and each side."""
    print(f"{condition}: medians of per-round ratios (p25-p75, min-max)")
    for label, ours, theirs in (
        ("try_acquire / trivial", mine, raw),
        ("minimal / trivial (floor)", minimal, raw),
        ("try_acquire / minimal", mine, minimal),
    ):
        sample = ratios(ours, theirs)
        p25, median, p75 = statistics.quantiles(sample, n=4)
        print(
            f"  {label:<27}{median:.3f}  ({p25:.3f}-{p75:.3f}, "
            f"{sample[0]:.3f}-{sample[-1]:.3f}, {len(sample)} rounds)"
        )
    print(f"  {'side':<16}{'wall us':>9}{'p25':>8}{'p75':>8}{'srv us':>8}{'cpu us':>8}")
    for side in (raw, minimal, mine):
        q25, middle, q75 = statistics.quantiles(side.seconds, n=4)
        print(
            f"  {side.name:<16}{middle * 1e6:9.2f}{q25 * 1e6:8.2f}{q75 * 1e6:8.2f}"
            f"{statistics.median(side.server_us):8.2f}"
            f"{statistics.median(side.cpu_seconds) * 1e6:8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--calls", type=int, default=200, help="calls per round")
    parser.add_argument("--algorithm", default="gcra")
    parser.add_argument("--pin", action="store_true", help="pin the hog beside us")
    parser.add_argument("--only", choices=("quiet", "hog"), default=None)
    options = parser.parse_args()
    server = RedisServer().start()
    try:
        connection = redis.Redis(host="127.0.0.1", port=server.port)
        backend = RedisBackend(connection, timeout=TIMEOUT)
        limiter = RedisLimiter(
            "1000000/s", options.algorithm, backend=backend, name="sequential"
        )
        print(
            f"redis-server {server.port}, {options.algorithm}, "
            f"{options.calls} calls a round, interleaved"
        )
        for condition in ("quiet", "hog"):
            if options.only not in (None, condition):
                continue
            sides = [
                raw_side(connection),
                minimal_side(connection),
                ratefuse_side(limiter),
            ]
            if condition == "quiet":
                measure(sides, connection, options.rounds, options.calls)
            else:
                with cpu_hog(options.pin) as pid:
                    label = "pinned beside us" if options.pin else "unpinned"
                    print(f"hog: pid {pid}, {label}")
                    measure(sides, connection, options.rounds, options.calls)
            if limiter.stats().fallbacks:
                raise SystemExit("Redis did not answer every decision")
            report(condition, *sides)
        limiter.close()
        backend.close()
        connection.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
