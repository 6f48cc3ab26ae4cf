"""The server's time per exact decision against the targets of issue 15,
interleaved round by round on one redis-server (INFO commandstats).

Each round runs every case once, in turn: the minimal script (TIME, GET,
SET with PX), ratefuse's gcra, fixed_window, sliding_window and
sliding_log (one subject, one limit), a compound of two gcra limits, and
`limits`' fixed window, moving window and sliding window counter. The
ratio of a case to its reference is taken round by round; the table gives
the median and the spread (min-max) of the server's microseconds per
decision and of the ratios. Targets: gcra, fixed_window and sliding_window
at most 1.2x the minimal script, the compound at most 1.5x, sliding_log at
most `limits`' moving window. Exits 1 when a target's median ratio is
missed, unless ``--quick`` (fewer decisions, report only: CI's noise).

    python benchmarks/redis_server_time.py [--redis URL] [--rounds 7]
        [--decisions 5000] [--quick]

Without --redis a redis-server is started on a free loopback port.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run from a checkout: the package from its src (built in place), and the
# test suite's redis-server fixtures, shared rather than copied.
from checkout import use_checkout  # noqa: E402

use_checkout(tests=True)

import redis  # noqa: E402

from ratefuse.bench.redis_server_time import (  # noqa: E402
    COMPOUND,
    MINIMAL,
    ServerTime,
    interleaved,
    server_time_cases,
)
from redis_servers import RedisServer  # noqa: E402

# (case, reference, at most this many times the reference)
TARGETS = (
    ("ratefuse gcra", MINIMAL, 1.2),
    ("ratefuse fixed_window", MINIMAL, 1.2),
    ("ratefuse sliding_window", MINIMAL, 1.2),
    ("ratefuse sliding_log", "limits moving window", 1.0),
    (COMPOUND, MINIMAL, 1.5),
)


def _spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


def report(runs: list[list[ServerTime]]) -> bool:
    """`report` prints the table and returns whether every target held
    (its median ratio)."""
    by_name: dict[str, list[ServerTime]] = {}
    for run in runs:
        for figure in run:
            by_name.setdefault(figure.name, []).append(figure)
    minimal = [figure.server_us for figure in by_name[MINIMAL]]
    print(
        f"{'case':32} {'server us/decision':>24} {'x minimal':>22} "
        f"{'cmds':>5} {'wall us':>8} {'cpu us':>7}"
    )
    for name, figures in by_name.items():
        server = [figure.server_us for figure in figures]
        ratios = [mine / floor for mine, floor in zip(server, minimal, strict=True)]
        print(
            f"{name:32} {_spread(server):>24} {_spread(ratios):>22} "
            f"{statistics.median(f.commands for f in figures):5.2f} "
            f"{statistics.median(f.wall_us for f in figures):8.1f} "
            f"{statistics.median(f.cpu_us for f in figures):7.1f}"
        )
    held = True
    print()
    for name, reference, bound in TARGETS:
        if name not in by_name or reference not in by_name:
            print(f"{name}: not measured (needs {reference})")
            continue
        ratios = [
            mine.server_us / theirs.server_us
            for mine, theirs in zip(by_name[name], by_name[reference], strict=True)
        ]
        median = statistics.median(ratios)
        ok = median <= bound
        held = held and ok
        print(
            f"{name:32} {_spread(ratios)} x {reference}, target <= {bound}: "
            f"{'met' if ok else 'MISSED'}"
        )
    return held


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis", metavar="URL", help="the server (default: start one)"
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--decisions", type=int, default=5000)
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds of 1,000; report, never fail"
    )
    args = parser.parse_args(argv)
    rounds, decisions = (3, 1000) if args.quick else (args.rounds, args.decisions)
    server = None
    if args.redis is None:
        server = RedisServer().start()
        url = f"redis://127.0.0.1:{server.port}"
    else:
        url = args.redis
    try:
        client = redis.Redis.from_url(url)
        info = client.info("server")
        print(
            f"redis {info['redis_version']} at {url}: {rounds} rounds x "
            f"{decisions} decisions, interleaved"
        )
        runs = list(interleaved(client, server_time_cases(client), decisions, rounds))
        held = report(runs)
    finally:
        if server is not None:
            server.stop()
    if args.quick:
        return 0
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
