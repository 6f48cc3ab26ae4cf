"""The adaptive concurrency simulation (issue 19): the server model, the
figures, the targets at twice the capacity (the best adaptive algorithm
meets them, a bulkhead set 2x too high misses them), and ``ratefuse bench
adaptive``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ratefuse.__main__ import main
from ratefuse.bench.adaptive import algorithms, quick_run
from ratefuse.bench.adaptive_figures import (
    best_of,
    figures,
    percentile,
    unloaded_p99,
)
from ratefuse.bench.adaptive_sim import (
    FixedLimit,
    NoLimit,
    Run,
    ServerModel,
    policies,
    service_rate,
    simulate,
)

MODEL = ServerModel()


@pytest.mark.parametrize(
    ("in_flight", "capacity", "contention", "rate"),
    [
        (1, 10, 0.5, 1.0),
        (10, 10, 0.5, 1.0),
        (20, 10, 0.0, 0.5),
        (20, 10, 0.5, 1 / 3),
    ],
)
def test_service_rate(
    in_flight: int, capacity: int, contention: float, rate: float
) -> None:
    assert service_rate(in_flight, capacity, contention) == pytest.approx(rate)


def test_calls_below_capacity_take_their_work() -> None:
    model = ServerModel(capacity=10, latency=0.01, jitter=0.0)
    run = Run(load=0.05, duration=2.0, drop_at=1.5, warmup=0.5)
    outcome = simulate(model, run, NoLimit())
    assert outcome.latencies
    assert max(outcome.latencies) == pytest.approx(0.01)
    assert outcome.refused == []


def test_a_run_is_repeatable_from_its_seed() -> None:
    run = Run(load=2.0, duration=1.0, drop_at=0.5, warmup=0.1)
    first = simulate(MODEL, run, FixedLimit("fixed", 10))
    second = simulate(MODEL, run, FixedLimit("fixed", 10))
    assert first.latencies == second.latencies
    assert max(first.trace_in_flight) == 10


def test_percentile_is_nearest_rank() -> None:
    assert percentile([5.0, 1.0, 3.0, 2.0], 0.5) == 2.0
    assert percentile([5.0, 1.0, 3.0, 2.0], 0.99) == 5.0
    assert math.isnan(percentile([], 0.5))


def test_at_twice_the_capacity_an_adaptive_limit_meets_the_targets() -> None:
    run = quick_run(2.0)
    unloaded = unloaded_p99(MODEL, run)
    rows = {}
    for make in policies(MODEL, algorithms(MODEL)):
        outcome = simulate(MODEL, run, make())
        rows[outcome.policy] = figures(MODEL, run, outcome, unloaded)
    best = best_of([rows[name] for name in algorithms(MODEL)], unloaded)
    assert best.failures(unloaded) == [], best
    assert best.goodput >= 0.9
    assert best.p99 <= 2 * unloaded
    assert best.reconverge <= 5.0
    # The same criteria, failed by a fixed limit set 2x too high: it queues
    # at the server (p99 about 3x) and loses capacity to contention.
    too_high = rows["fixed, 2x too high"]
    assert too_high.goodput < 0.9
    assert too_high.p99 > 2 * unloaded
    assert math.isinf(too_high.reconverge)
    assert rows["no limit"].goodput < 0.1


def test_bad_models_and_runs_name_the_field() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ServerModel(capacity=1)
    with pytest.raises(ValueError, match="jitter"):
        ServerModel(jitter=1.0)
    with pytest.raises(ValueError, match="warmup"):
        Run(warmup=5.0, drop_at=3.0, duration=6.0)
    with pytest.raises(ValueError, match="load"):
        Run(load=0.0)


def test_bench_adaptive_prints_the_table_and_writes_plot_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "adaptive.png"
    report = tmp_path / "adaptive.json"
    argv = ["bench", "adaptive", "--quick", "--plot", str(plot), "--json", str(report)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| 2x | Vegas |" in out
    assert "| 0.5x | fixed, 2x too high |" in out
    assert plot.read_bytes().startswith(b"\x89PNG")
    rows = json.loads(report.read_text())["rows"]
    assert {row["load"] for row in rows} == {0.5, 1.0, 1.5, 2.0, 3.0}


def test_bench_adaptive_refuses_options_it_does_not_read() -> None:
    with pytest.raises(SystemExit, match="--workers does not apply"):
        main(["bench", "adaptive", "--workers", "3"])
