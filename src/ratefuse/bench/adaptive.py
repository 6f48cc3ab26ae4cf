"""``ratefuse bench adaptive``: the adaptive concurrency simulation over
loads of 0.5x to 3x the capacity, its table, its plot and the issue's
targets at 2x (with ``--server``, also the real-server check of
:mod:`ratefuse.bench.adaptive_server`).

The contenders: no limit, a Bulkhead set right (the capacity before the
drop), one set 2x too high, and AIMD (timeout 1.5x the normal latency),
Vegas and Gradient2 with their defaults, all starting from their default
initial limit (20) on a server of capacity 50 whose capacity halves in
the middle of the run.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Final

from ratefuse.bench.adaptive_figures import (
    Figures,
    best_of,
    figures,
    percentile,
    servable,
    unloaded_p99,
)
from ratefuse.bench.adaptive_sim import (
    Outcome,
    Run,
    ServerModel,
    policies,
    simulate,
)
from ratefuse.bench.progress import Progress
from ratefuse.core.adaptive.config import AIMD, AdaptiveAlgorithm, Gradient2, Vegas

LOADS: Final = (0.5, 1.0, 1.5, 2.0, 3.0)
TARGET_LOAD: Final = 2.0


def algorithms(model: ServerModel) -> dict[str, AdaptiveAlgorithm]:
    """`algorithms` are the adaptive contenders, named for the table."""
    return {
        "AIMD": AIMD(timeout=1.5 * model.latency),
        "Vegas": Vegas(),
        "Gradient2": Gradient2(),
    }


def quick_run(load: float = TARGET_LOAD) -> Run:
    """`quick_run` is the short schedule the tests and --quick use: 6 s,
    the capacity halved at 3 s."""
    return Run(load=load, duration=6.0, drop_at=3.0, warmup=1.0)


def sweep(
    model: ServerModel, runs: Sequence[Run]
) -> tuple[float, list[tuple[Run, Figures, Outcome]]]:
    """`sweep` runs every contender on every run; returns the unloaded p99
    and each run's figures and outcome."""
    unloaded = unloaded_p99(model, runs[0])
    results = []
    makers = policies(model, algorithms(model))
    progress = Progress("adaptive")
    for index, run in enumerate(runs, 1):
        progress.step(f"{index}/{len(runs)} load {run.load:g}x")
        for make in makers:
            outcome = simulate(model, run, make())
            results.append((run, figures(model, run, outcome, unloaded), outcome))
    progress.done(f"{len(runs)} loads")
    return unloaded, results


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.1f}"


def table(
    unloaded: float, results: Sequence[tuple[Run, Figures, Outcome]]
) -> list[str]:
    """`table` is the results as a Markdown table, the targets checked at 2x."""
    lines = [
        f"unloaded p99 (0.5x, no limit): {unloaded * 1e3:.1f} ms; targets at "
        f"{TARGET_LOAD:g}x: goodput >= 90%, p99 <= 2x unloaded, re-converge <= 5 s",
        "",
        "| load | policy | goodput | p50 ms | p99 ms | refused | re-converge s "
        "| goodput after drop | targets at 2x |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run, row, _ in results:
        verdict = ""
        if run.load == TARGET_LOAD:
            missed = row.failures(unloaded)
            verdict = "met" if not missed else "missed: " + "; ".join(missed)
        reconverge = "never" if math.isinf(row.reconverge) else f"{row.reconverge:.2f}"
        lines.append(
            f"| {run.load:g}x | {row.policy} | {row.goodput:.0%} | {_ms(row.p50)} "
            f"| {_ms(row.p99)} | {row.refused:.0%} | {reconverge} "
            f"| {row.goodput_after:.0%} | {verdict} |"
        )
    return lines


def write_plot(
    path: Path, model: ServerModel, results: Sequence[tuple[Run, Figures, Outcome]]
) -> None:
    """`write_plot` draws, at 2x the capacity, each policy's limit, goodput
    and p99 latency over time (needs matplotlib, in the ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    shown = [(run, outcome) for run, _, outcome in results if run.load == TARGET_LOAD]
    figure, (limits, goodput, latency) = pyplot.subplots(
        3, 1, figsize=(10, 10), sharex=True
    )
    for run, outcome in shown:
        times, good, p99 = _windows(model, run, outcome)
        traced = [
            (time, limit)
            for time, limit in zip(
                outcome.trace_times, outcome.trace_limits, strict=True
            )
            if limit is not None
        ]
        if traced:
            limits.plot(*zip(*traced, strict=True), label=outcome.policy)
        else:
            limits.plot([], [], label=outcome.policy)
        goodput.plot(times, good, label=outcome.policy)
        latency.plot(times, [value * 1e3 for value in p99], label=outcome.policy)
    run = shown[0][0]
    for axes in (limits, goodput, latency):
        axes.axvline(run.drop_at, color="grey", linestyle=":")
        axes.grid(alpha=0.3)
    limits.set_ylabel("concurrency limit")
    limits.set_yscale("log")
    limits.axhline(model.capacity, color="grey", linewidth=0.8)
    goodput.set_ylabel("goodput, share of servable")
    goodput.set_ylim(0, 1.1)
    latency.set_ylabel("p99 latency, ms (admitted)")
    latency.set_yscale("log")
    latency.set_xlabel(
        f"simulated seconds (load {TARGET_LOAD:g}x capacity {model.capacity}; "
        f"capacity halves at {run.drop_at:g} s)"
    )
    limits.legend(fontsize=8, ncol=3)
    figure.suptitle("ratefuse adaptive concurrency: simulation")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)


def _windows(
    model: ServerModel, run: Run, outcome: Outcome
) -> tuple[list[float], list[float], list[float]]:
    count = math.ceil(run.duration / run.window)
    good = [0] * count
    latencies: list[list[float]] = [[] for _ in range(count)]
    for start, latency in zip(outcome.starts, outcome.latencies, strict=True):
        index = min(count - 1, int((start + latency) / run.window))
        latencies[index].append(latency)
        good[index] += latency <= run.deadline
    times = [(index + 0.5) * run.window for index in range(count)]
    half = ServerModel(
        model.capacity // 2, model.latency, model.jitter, model.contention
    )
    before = servable(model, run.load)
    after = servable(half, run.load * model.throughput / half.throughput)
    shares = [
        good[index] / run.window / (after if times[index] >= run.drop_at else before)
        for index in range(count)
    ]
    return times, shares, [percentile(values, 0.99) for values in latencies]


def run(args: argparse.Namespace) -> int:
    """`run` executes ``ratefuse bench adaptive``; non-zero if no adaptive
    algorithm meets the targets at 2x, or the bulkhead 2x too high does."""
    model = ServerModel()
    if args.quick:
        runs = [quick_run(load) for load in LOADS]
    else:
        duration = args.duration or 20.0
        runs = [
            Run(
                load=load, duration=duration, drop_at=duration / 2, warmup=duration / 10
            )
            for load in LOADS
        ]
    unloaded, results = sweep(model, runs)
    print("\n".join(table(unloaded, results)))
    if args.plot:
        write_plot(args.plot, model, results)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "unloaded_p99": unloaded,
                    "rows": [
                        {"load": run.load, **asdict(row)} for run, row, _ in results
                    ],
                },
                indent=2,
            )
        )
    status = 0
    names = algorithms(model)
    best = best_of(
        [
            row
            for run, row, _ in results
            if run.load == TARGET_LOAD and row.policy in names
        ],
        unloaded,
    )
    if best.failures(unloaded):
        print(f"no adaptive algorithm met the targets (best: {best.policy})")
        status = 1
    too_high = next(
        row
        for run, row, _ in results
        if run.load == TARGET_LOAD and row.policy == "fixed, 2x too high"
    )
    if not too_high.failures(unloaded):
        print("the bulkhead set 2x too high met the targets: the model is too easy")
        status = 1
    if args.server:
        from ratefuse.bench.adaptive_server import run_server_check

        print("\n".join(["", *run_server_check(quick=args.quick)]))
    return status
