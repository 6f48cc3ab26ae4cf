"""``ratefuse bench``: argument handling and the runs it drives.

Timing method: scenarios are measured one group at a time (a group is one
operation: try_acquire, keyed try_acquire, breaker open, ...). Every
scenario is warmed up and calibrated (about 20 ms a sample, 5 ms with
--quick), then timed in several repeats (7, or 3 with --quick) with the
garbage collector paused, as timeit does; each repeat runs every scenario of
the group once in turn, so drift of the machine affects all contenders of a
comparison alike, ratefuse and peers interleaved. The
table shows the median ns per call and the spread (min-max over repeats);
figures include the loop's own cost of about 3 ns.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence
from pathlib import Path

from ratefuse.bench import accuracy as accuracy_module
from ratefuse.bench.accuracy import Verdict
from ratefuse.bench.asgi import DEFAULT_CONNECTIONS
from ratefuse.bench.preflight import reachable, require, writable
from ratefuse.bench.progress import Progress
from ratefuse.bench.report import (
    NOTHING_TO_PLOT,
    accuracy_table,
    plotted,
    speed_table,
    write_json,
    write_plot,
)
from ratefuse.bench.scenarios import Measurement, Scenario, measure
from ratefuse.bench.scenarios_keyed import KEYED_GROUP

# The options each mode reads; giving another is an error, not ignored.
_COMMON = ("quick", "only", "json")
_CONTENDERS = ("peers", "redis", "redis_cluster")
MODE_OPTIONS = {
    "speed": (*_COMMON, *_CONTENDERS, "repeats", "plot"),
    "accuracy": (*_COMMON, *_CONTENDERS, "workers", "duration", "target"),
    "asgi": (*_COMMON, "repeats", "duration", "connections", "http"),
    "adaptive": ("quick", "json", "plot", "duration", "server"),
    "grpc": ("quick", "repeats"),
}
DEFAULT_WORKERS = 8


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`add_parser` adds ``bench`` to the ``ratefuse`` command line."""
    bench = commands.add_parser(
        "bench",
        help="measure what a decision costs and whether limits hold",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "mode",
        nargs="?",
        choices=("speed", "accuracy", "asgi", "adaptive", "grpc"),
        default="speed",
        help="speed (default): ns per decision; accuracy: admitted vs the bound; "
        "asgi: requests/s of a Starlette app with and without the middleware; "
        "adaptive: the adaptive concurrency simulation; "
        "grpc: CPU per unary call with and without the interceptors",
    )
    bench.add_argument(
        "--peers", action="store_true", help="also run the installed peers"
    )
    bench.add_argument("--redis", metavar="URL", help="also run against this Redis")
    bench.add_argument(
        "--redis-cluster", metavar="URL", help="also run against this Redis Cluster"
    )
    bench.add_argument("--quick", action="store_true", help="short runs (for CI)")
    bench.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only the scenarios (or accuracy targets) whose label contains "
        "TEXT; repeatable",
    )
    bench.add_argument("--repeats", type=int, help="timed repeats per scenario")
    bench.add_argument(
        "--json", type=Path, metavar="FILE", help="write the figures as JSON"
    )
    bench.add_argument("--plot", type=Path, metavar="FILE.png", help="draw decisions/s")
    bench.add_argument(
        "--workers",
        type=int,
        help=f"accuracy: threads hammering the quota (default {DEFAULT_WORKERS})",
    )
    bench.add_argument(
        "--duration",
        type=float,
        help="accuracy: seconds per target (default 3, quick 1); "
        "asgi: seconds per run (default 5, quick 0.5)",
    )
    bench.add_argument(
        "--connections",
        type=int,
        help="asgi: concurrent connections of the load generator "
        f"(default {DEFAULT_CONNECTIONS})",
    )
    bench.add_argument(
        "--http",
        choices=("auto", "h11", "httptools"),
        help="asgi: uvicorn's HTTP implementation (default auto: httptools "
        "if installed)",
    )
    bench.add_argument(
        "--server",
        action="store_true",
        help="adaptive: also drive a real uvicorn server past its capacity",
    )
    bench.add_argument(
        "--target",
        action="append",
        default=[],
        metavar="MODULE:FACTORY",
        help="accuracy: also judge FACTORY() -> try_acquire, as one of ours "
        "(for checking a custom limiter)",
    )


def run(args: argparse.Namespace) -> int:
    """`run` executes ``ratefuse bench`` and returns the exit status.

    Everything that can be checked before the run is (options the mode does
    not read, missing extras, unwritable --json/--plot paths, unreachable
    --redis URLs): a mistake costs a message at once, not a whole run."""
    check_options(args)
    if args.json is not None:
        writable("--json", args.json)
    if args.plot is not None:
        require("--plot", ("matplotlib",), "bench")
        writable("--plot", args.plot)
    for option, url, cluster in (
        ("--redis", args.redis, False),
        ("--redis-cluster", args.redis_cluster, True),
    ):
        if url:
            reachable(option, url, cluster=cluster)
    if args.mode == "accuracy":
        return run_accuracy(args)
    if args.mode == "adaptive":
        from ratefuse.bench import adaptive

        return adaptive.run(args)
    if args.mode == "asgi":
        from ratefuse.bench import asgi

        require("ratefuse bench asgi", ("starlette", "uvicorn"), "bench")
        if args.http == "httptools":
            require("--http httptools", ("httptools",), "bench")
        return asgi.run(
            args.quick,
            args.repeats,
            args.duration,
            args.connections or DEFAULT_CONNECTIONS,
            args.json,
            args.http or "auto",
            asgi.select_variants(args.only),
        )
    if args.mode == "grpc":
        from ratefuse.bench import grpc_inprocess

        require("ratefuse bench grpc", ("grpc",), "grpc")
        default = 3 if args.quick else grpc_inprocess.DEFAULT_ROUNDS
        return grpc_inprocess.run(args.repeats or default)
    return run_speed(args)


def check_options(args: argparse.Namespace) -> None:
    """`check_options` exits with a message on a bad value or on an option
    the mode does not read (it would otherwise be ignored silently)."""
    if args.repeats is not None and args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}")
    if args.workers is not None and args.workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {args.workers}")
    if args.duration is not None and not args.duration > 0:
        raise SystemExit(f"--duration must be > 0 seconds, got {args.duration}")
    if args.connections is not None and args.connections < 1:
        raise SystemExit(f"--connections must be >= 1, got {args.connections}")
    used = MODE_OPTIONS[args.mode]
    for option in sorted({name for names in MODE_OPTIONS.values() for name in names}):
        if option not in used and getattr(args, option) not in (None, False, []):
            flag = "--" + option.replace("_", "-")
            modes = [mode for mode, names in MODE_OPTIONS.items() if option in names]
            raise SystemExit(
                f"{flag} does not apply to ratefuse bench {args.mode} "
                f"(only to {', '.join(modes)})"
            )


def run_speed(args: argparse.Namespace) -> int:
    """`run_speed` times the local suite (and peers, Redis) and reports."""
    from ratefuse.bench.suite import local_scenarios

    scenarios: list[Scenario] = local_scenarios()
    skipped: list[str] = []
    if args.peers:
        from ratefuse.bench.peers import breaker_peer_scenarios, limiter_peer_scenarios

        for found, missing in (limiter_peer_scenarios(), breaker_peer_scenarios()):
            scenarios += found
            skipped += missing
    for url, cluster in ((args.redis, False), (args.redis_cluster, True)):
        if url:
            from ratefuse.bench.redis_scenarios import redis_scenarios

            found, missing = redis_scenarios(url, cluster=cluster, peers=args.peers)
            scenarios += found
            skipped += missing
    if skipped:
        print(
            f"not installed, skipped: {', '.join(sorted(set(skipped)))}",
            file=sys.stderr,
        )
    if args.only:
        scenarios = [s for s in scenarios if any(text in s.label for text in args.only)]
    if not scenarios:
        raise SystemExit(f"no scenario matches --only {' '.join(args.only)}")
    if args.plot is not None and not plotted(scenarios):
        raise SystemExit(f"--plot {args.plot}: {NOTHING_TO_PLOT}")
    if any(s.group == KEYED_GROUP and s.implementation != "-" for s in scenarios):
        # The live tables are loaded with decide_many, which needs numpy.
        require("the keyed scenarios", ("numpy",), "bench")
    scenarios.sort(key=lambda s: (s.group, s.name))
    repeats = args.repeats or (3 if args.quick else 7)
    groups = sorted({scenario.group for scenario in scenarios})
    print(
        f"timing {len(scenarios)} scenarios in {len(groups)} groups x {repeats} "
        "interleaved repeats",
        file=sys.stderr,
    )
    results: list[Measurement] = []
    for group in groups:
        # One group at a time: its contenders interleaved, and nothing of the
        # other groups alive (peers that hold 100k keys slow down everything
        # measured beside them, through the allocator and the caches).
        results += measure(
            [scenario for scenario in scenarios if scenario.group == group],
            repeats=repeats,
            sample_seconds=0.005 if args.quick else 0.02,
            progress=Progress(group).repeats,
        )
        gc.collect()
    print("\n".join(speed_table(results)))
    server_time: list[dict[str, object]] = []
    if args.redis and (not args.only or any("server" in text for text in args.only)):
        from ratefuse.bench.redis_scenarios import redis_server_time

        lines, server_time = redis_server_time(
            args.redis, peers=args.peers, quick=args.quick
        )
        print("\n".join(lines))
    if args.json:
        write_json(args.json, results, [], skipped, server_time)
    if args.plot:
        write_plot(args.plot, results)
    return 0


def load_target(spec: str) -> accuracy_module.Target:
    """`load_target` imports ``module:factory`` as an accuracy target."""
    import importlib

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"--target must be MODULE:FACTORY, got {spec!r}")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise SystemExit(f"--target {spec}: cannot load: {exc}") from None
    if not callable(factory):
        raise SystemExit(f"--target {spec}: {attribute} is not callable")
    return accuracy_module.Target(spec, factory, "meter", ours=True)


def run_accuracy(args: argparse.Namespace) -> int:
    """`run_accuracy` judges every target; non-zero if ours breaks a bound."""
    extra = [load_target(spec) for spec in args.target]
    targets = accuracy_module.local_targets() + accuracy_module.shm_targets()
    targets += extra
    skipped: list[str] = []
    if args.peers:
        found, skipped = accuracy_module.peer_targets()
        targets += found
    if args.redis or args.redis_cluster:
        from ratefuse.bench.redis_scenarios import redis_accuracy_targets

        for url, cluster in ((args.redis, False), (args.redis_cluster, True)):
            if url:
                targets += redis_accuracy_targets(url, cluster=cluster)
    if args.only:
        targets = [t for t in targets if any(text in t.name for text in args.only)]
    if not targets:
        raise SystemExit(f"no accuracy target matches --only {' '.join(args.only)}")
    if skipped:
        print(f"not installed, skipped: {', '.join(skipped)}", file=sys.stderr)
    duration = args.duration or (1.0 if args.quick else 3.0)
    workers = args.workers or DEFAULT_WORKERS
    results = []
    progress = Progress("accuracy")
    for index, target in enumerate(targets, 1):
        progress.step(f"{index}/{len(targets)} {target.name}")
        results.append(accuracy_module.run_threads(target, workers, duration))
    progress.done(f"{len(targets)} targets")
    print("\n".join(accuracy_table(results)))
    if args.json:
        write_json(args.json, [], results, skipped)
    status = 0
    for verdict, what in (
        (Verdict.OVER_THE_BOUND, "exceeded its bound"),
        (Verdict.ADMITS_TOO_LITTLE, "admitted too little"),
    ):
        broken = [r.target for r in results if r.ours and r.verdict is verdict]
        if broken:
            print(f"ratefuse {what}: {', '.join(broken)}", file=sys.stderr)
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - thin
    """`main` runs ``ratefuse bench`` alone (``python -m ratefuse.bench.cli``)."""
    parser = argparse.ArgumentParser(prog="ratefuse")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args(["bench", *(argv or sys.argv[1:])]))
