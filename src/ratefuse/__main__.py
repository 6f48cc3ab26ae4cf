"""The ``ratefuse`` command line (also ``python -m ratefuse``):
``ratefuse bench`` measures speed and accuracy, ``ratefuse demo`` shows a
limiter deciding on a simulated clock, ``ratefuse config`` pushes and shows
a fleet's configuration in Redis or etcd."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ratefuse import IMPLEMENTATION, Limiter, __version__
from ratefuse.bench.cli import add_parser as add_bench_parser
from ratefuse.bench.cli import run as run_bench
from ratefuse.bench.progress import Progress
from ratefuse.bench.report import table
from ratefuse.bench.scenarios import Measurement, limiter_scenarios, measure
from ratefuse.config._cli import add_parser as add_config_parser
from ratefuse.config._cli import run as run_config

MS = 1_000_000


def demo_trace() -> list[str]:
    """`demo_trace` shows a 5/s limiter deciding on a simulated clock."""
    now_ns = 0
    limiter = Limiter("5/s", clock=lambda: now_ns)
    lines = ["A 5/s gcra limiter, 8 requests 50 ms apart, on a simulated clock:"]
    for _ in range(8):
        decision = limiter.decide()
        lines.append(
            f"  t={now_ns // MS:4d} ms  allowed={decision.allowed!s:5}  "
            f"remaining={decision.remaining}  retry_after={decision.retry_after:.3f}s"
        )
        now_ns += 50 * MS
    return lines


def format_table(results: Sequence[Measurement]) -> list[str]:
    """`format_table` renders ns per call and calls/s, with the spread."""
    baseline = next(
        (
            result.median_ns
            for result in results
            if result.scenario.label == "try_acquire/gcra[cython]"
        ),
        None,
    )
    rows = [
        [
            result.scenario.label,
            f"{result.median_ns:.1f}",
            f"{result.min_ns:.1f}-{result.max_ns:.1f}",
            f"{result.per_second:,.0f}",
            f"{result.median_ns / baseline:.2f}x" if baseline else "",
        ]
        for result in results
    ]
    return table(["scenario", ">ns/call", ">min-max", ">calls/s", ">vs gcra"], rows)


def run_demo(quick: bool) -> int:
    """`run_demo` prints the trace, then times every algorithm."""
    print(f"ratefuse {__version__} ({IMPLEMENTATION} cores)")
    print("\n".join(demo_trace()))
    scenarios = [
        s for s in limiter_scenarios() if s.group == "try_acquire" or s.group == "floor"
    ]
    calls = 5_000 if quick else 50_000
    print(
        f"\nTiming {len(scenarios)} scenarios, {calls:,} calls x 5 interleaved repeats:"
    )

    progress = Progress("demo").repeats
    results = measure(scenarios, repeats=5, calls=calls, progress=progress)
    print("\n".join(format_table(results)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`main` is the entry point of the ``ratefuse`` command."""
    parser = argparse.ArgumentParser(prog="ratefuse", description=__doc__)
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="decide on a simulated clock, then time every algorithm"
    )
    demo.add_argument("--quick", action="store_true", help="fewer calls (for CI)")
    add_bench_parser(commands)
    add_config_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(args.quick)
    if args.command == "bench":
        return run_bench(args)
    if args.command == "config":
        return run_config(args)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
