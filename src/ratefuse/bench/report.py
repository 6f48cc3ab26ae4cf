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
        return f"{peer_ns / ours_ns:9.1f}x faster"
    return f"{ours_ns / peer_ns:9.1f}x slower"


def speed_table(results: Sequence[Measurement]) -> list[str]:
    """`speed_table` renders ns per call (median, min-max over repeats),
    calls/s, the ratio to compiled gcra try_acquire, and for a peer how many
    times slower it is than ratefuse on the same scenario."""
    baseline = _baseline(results)
    ours = _ours(results)
    lines = [
        f"{'group':22} {'scenario':26} {'implementation':26} {'ns/call':>9} "
        f"{'min-max':>17} {'calls/s':>13} {'vs gcra':>8} {'ratefuse is':>12}"
    ]
    for result in results:
        scenario = result.scenario
        ratio = f"{result.median_ns / baseline:7.2f}x" if baseline else ""
        peer = scenario.implementation not in ("cython", "python", "-")
        mine = ours.get((scenario.group, scenario.name))
        speedup = _speedup(result.median_ns, mine) if peer and mine else ""
        lines.append(
            f"{scenario.group:22} {scenario.name:26} {scenario.implementation:26} "
            f"{result.median_ns:9.1f} {result.min_ns:8.1f}-{result.max_ns:<8.1f} "
            f"{result.per_second:13,.0f} {ratio:>8} {speedup}"
        )
    return lines


def accuracy_table(results: Sequence[AccuracyResult]) -> list[str]:
    """`accuracy_table` renders admitted vs bound, utilisation and the worst
    rolling period for each target."""
    lines = [
        f"{'target':34} {'workers':>7} {'attempts':>11} {'admitted':>9} {'bound':>7} "
        f"{'utilisation':>11} {'worst period':>12}  verdict"
    ]
    for result in results:
        verdict = "OVER THE BOUND" if result.exceeded else "holds"
        lines.append(
            f"{result.target:34} {result.workers:7d} {result.attempts:11,d} "
            f"{result.admitted:9d} {result.bound:7d} {result.utilisation:11.1%} "
            f"{result.worst_window:12d}  {verdict}"
        )
    return lines


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
) -> None:
    """`write_json` saves every figure with the environment it came from."""
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
        "accuracy": [result.as_dict() for result in accuracy],
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


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

    shown = [m for m in speed if m.scenario.implementation != "-"]
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
