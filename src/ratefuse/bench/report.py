"""Reports for ``ratefuse bench``: the table, JSON and the plot."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ratefuse.bench.accuracy import AccuracyResult
from ratefuse.bench.scenarios import Measurement
from ratefuse.core.implementation import IMPLEMENTATION

BASELINE = ("try_acquire", "gcra", "cython")


def _baseline(results: Sequence[Measurement]) -> float | None:
    for result in results:
        scenario = result.scenario
        if (scenario.group, scenario.name, scenario.implementation) == BASELINE:
            return result.median_ns
    return None


def _ours(results: Sequence[Measurement]) -> dict[tuple[str, str], float]:
    """ratefuse's median per (group, name), for peer speed-ups: the compiled
    cores', or the reference cores' where the compiled ones are not built."""
    ours: dict[tuple[str, str], float] = {}
    for implementation in ("python", "cython"):  # cython overrides python
        for result in results:
            if result.scenario.implementation == implementation:
                ours[(result.scenario.group, result.scenario.name)] = result.median_ns
    return ours


def _speedup(peer_ns: float, ours_ns: float) -> str:
    """`_speedup` says how ratefuse compares with a peer on one scenario."""
    if peer_ns >= ours_ns:
        return f"{peer_ns / ours_ns:.1f}x faster"
    return f"{ours_ns / peer_ns:.1f}x slower"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """`table` aligns ``rows`` under ``headers``, each column as wide as its
    widest cell (a long peer or scenario name never shifts the columns);
    a header starting with ">" is right-aligned (the ">" is not shown)."""
    names = [header.lstrip(">") for header in headers]
    right = [header.startswith(">") for header in headers]
    widths = [
        max([len(name), *(len(row[column]) for row in rows)])
        for column, name in enumerate(names)
    ]

    def line(cells: Sequence[str]) -> str:
        return " ".join(
            cell.rjust(width) if align else cell.ljust(width)
            for cell, width, align in zip(cells, widths, right, strict=True)
        ).rstrip()

    return [line(names), *(line(row) for row in rows)]


def speed_table(results: Sequence[Measurement]) -> list[str]:
    """`speed_table` renders ns per call (median, min-max over repeats),
    calls/s, the ratio to compiled gcra try_acquire, and for a peer how many
    times slower it is than ratefuse on the same scenario."""
    baseline = _baseline(results)
    ours = _ours(results)
    rows = []
    for result in results:
        scenario = result.scenario
        peer = scenario.implementation not in ("cython", "python", "-")
        mine = ours.get(scenario.compared_as)
        rows.append(
            [
                scenario.group,
                scenario.name,
                scenario.implementation,
                f"{result.median_ns:.1f}",
                f"{result.min_ns:.1f}-{result.max_ns:.1f}",
                f"{result.per_second:,.0f}",
                f"{result.median_ns / baseline:.2f}x" if baseline else "",
                _speedup(result.median_ns, mine) if peer and mine else "",
            ]
        )
    headers = [
        "group",
        "scenario",
        "implementation",
        ">ns/call",
        ">min-max",
        ">calls/s",
        ">vs gcra",
        ">ratefuse is",
    ]
    return table(headers, rows)


def accuracy_table(results: Sequence[AccuracyResult]) -> list[str]:
    """`accuracy_table` renders admitted vs bound (and the least a correct
    limiter admits), utilisation, the worst rolling period and the verdict
    for each target."""
    rows = [
        [
            result.target,
            f"{result.workers:d}",
            f"{result.attempts:,d}",
            f"{result.admitted:d}",
            f"{result.least:d}",
            f"{result.bound:d}",
            f"{result.utilisation:.1%}",
            f"{result.worst_window:d}",
            result.verdict.text,
        ]
        for result in results
    ]
    headers = [
        "target",
        ">workers",
        ">attempts",
        ">admitted",
        ">least",
        ">bound",
        ">utilisation",
        ">worst period",
        "verdict",
    ]
    return table(headers, rows)


def environment() -> dict[str, Any]:
    """`environment` describes the machine and the versions measured."""
    from ratefuse import __version__
    from ratefuse.bench.peers import PEERS

    return {
        "ratefuse": __version__,
        "implementation": IMPLEMENTATION,
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "peers": {peer.distribution: peer.version() for peer in PEERS},
    }


def write_json(
    path: Path,
    speed: Sequence[Measurement],
    accuracy: Sequence[AccuracyResult],
    skipped: Sequence[str],
    server_time: Sequence[dict[str, object]] = (),
) -> None:
    """`write_json` saves every figure with the environment it came from
    (``server_time``: the Redis server's time per decision, see
    ``ratefuse.bench.redis_scenarios.redis_server_time``)."""
    document = {
        "schema": "ratefuse-bench/1",
        "environment": environment(),
        "skipped_peers": list(skipped),
        "speed": [
            {
                "group": m.scenario.group,
                "scenario": m.scenario.name,
                "implementation": m.scenario.implementation,
                "median_ns": m.median_ns,
                "min_ns": m.min_ns,
                "max_ns": m.max_ns,
                "per_second": m.per_second,
            }
            for m in speed
        ],
        "speed_unit": "ns per decision (a batch scenario's time over its size)",
        "accuracy": [result.as_dict() for result in accuracy],
        "redis_server_time": list(server_time),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


NOTHING_TO_PLOT = (
    "nothing to draw: the selected scenarios are all floors (implementation "
    '"-"); select a limiter or breaker scenario too'
)


def plotted(speed: Sequence[Any]) -> list[Any]:
    """`plotted` is what the plot draws of ``speed`` (Measurements or
    Scenarios): everything but the floors."""
    return [
        item for item in speed if getattr(item, "scenario", item).implementation != "-"
    ]


def write_plot(path: Path, speed: Sequence[Measurement]) -> None:
    """`write_plot` draws decisions/s per scenario, log scale, peers beside
    ratefuse (needs matplotlib, in the ``bench`` extra)."""
    try:
        import matplotlib
    except ImportError as exc:
        raise SystemExit(
            "--plot needs matplotlib: pip install 'ratefuse[bench]'"
        ) from exc
    matplotlib.use("Agg")
    from matplotlib import pyplot

    shown = plotted(speed)
    if not shown:
        raise SystemExit(f"--plot {path}: {NOTHING_TO_PLOT}")
    labels = [
        f"{m.scenario.group}: {m.scenario.name} [{m.scenario.implementation}]"
        for m in shown
    ]
    colours = [
        "tab:blue"
        if m.scenario.implementation == "cython"
        else "tab:cyan"
        if m.scenario.implementation == "python"
        else "tab:orange"
        for m in shown
    ]
    figure, axes = pyplot.subplots(figsize=(10, 0.28 * len(shown) + 1.5))
    axes.barh(range(len(shown)), [m.per_second for m in shown], color=colours)
    axes.set_yticks(range(len(shown)), labels, fontsize=7)
    axes.invert_yaxis()
    axes.set_xscale("log")
    axes.set_xlabel(
        "decisions per second (log scale; blue: ratefuse compiled, "
        "cyan: reference, orange: peers)"
    )
    axes.set_title(
        f"ratefuse bench ({platform.machine()}, Python {sys.version.split()[0]})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
