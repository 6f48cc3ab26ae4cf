"""`ratefuse bench`: arguments, a quick run of each mode, JSON and plot, and
an accuracy run that fails on an over-admitting limiter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ratefuse.__main__ import main
from ratefuse.bench import accuracy

OVER_ADMITTING = """
def always_allow():
    return lambda: True
"""


def test_help_documents_the_timing_method(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "median" in out
    assert "interleaved" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "--repeats", "0"], "--repeats must be >= 1"),
        (["bench", "accuracy", "--workers", "0"], "--workers must be >= 1"),
        (["bench", "accuracy", "--duration", "-1"], "--duration must be > 0"),
        (["bench", "accuracy", "--target", "no_colon"], "MODULE:FACTORY"),
        (["bench", "--only", "no such scenario"], "no scenario matches"),
    ],
)
def test_bad_arguments_are_refused(argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        main(argv)


def test_unknown_mode_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["bench", "nonsense"])
    assert exit_.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_quick_speed_run_writes_json_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    argv = ["bench", "--quick", "--repeats", "2", "--only", "try_acquire/gcra"]
    assert (
        main([*argv, "--only", "floor/", "--json", str(report), "--plot", str(plot)])
        == 0
    )
    out = capsys.readouterr().out
    assert "try_acquire" in out
    assert "gcra" in out
    document = json.loads(report.read_text())
    assert document["schema"] == "ratefuse-bench/1"
    environment = document["environment"]
    for field in ("ratefuse", "implementation", "python", "machine", "cpus", "peers"):
        assert field in environment
    rows = document["speed"]
    assert {row["group"] for row in rows} == {"try_acquire", "floor"}
    for row in rows:
        assert row["min_ns"] <= row["median_ns"] <= row["max_ns"]
        assert row["per_second"] == pytest.approx(1e9 / row["median_ns"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_peers_run_beside_ratefuse_with_a_speedup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("token_bucket")
    argv = [
        "bench",
        "--quick",
        "--repeats",
        "1",
        "--peers",
        "--only",
        "try_acquire/gcra",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "token-bucket" in out
    assert "faster" in out or "slower" in out


def test_accuracy_passes_for_ratefuse(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "accuracy", "--workers", "4", "--duration", "0.3"]
    assert main([*argv, "--only", "gcra", "--only", "fixed_window"]) == 0
    out = capsys.readouterr().out
    assert "ratefuse gcra" in out
    assert "OVER THE BOUND" not in out


def test_accuracy_fails_on_an_over_admitting_limiter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "overadmit.py").write_text(OVER_ADMITTING)
    monkeypatch.syspath_prepend(str(tmp_path))
    report = tmp_path / "accuracy.json"
    argv = ["bench", "accuracy", "--workers", "2", "--duration", "0.2"]
    argv += [
        "--target",
        "overadmit:always_allow",
        "--only",
        "overadmit",
        "--json",
        str(report),
    ]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "OVER THE BOUND" in captured.out
    assert "exceeded its bound: overadmit:always_allow" in captured.err
    (row,) = json.loads(report.read_text())["accuracy"]
    assert row["exceeded"] is True
    assert row["admitted"] > row["bound"]
    sys.modules.pop("overadmit", None)


@pytest.mark.parametrize(
    ("kind", "start_ms", "end_ms", "expected"),
    [
        ("meter", 0, 0, accuracy.LIMIT),
        ("meter", 0, 1_000, 2 * accuracy.LIMIT),
        ("window", 500, 1_500, 2 * accuracy.LIMIT),
        ("window", 0, 999, accuracy.LIMIT),
        ("rolling", 0, 1_000, accuracy.LIMIT),
        ("rolling", 0, 1_001, 2 * accuracy.LIMIT),
    ],
)
def test_bounds(kind: str, start_ms: int, end_ms: int, expected: int) -> None:
    assert accuracy.bound(kind, start_ms * 1_000_000, end_ms * 1_000_000) == expected


def test_window_bound_on_another_clock_counts_every_window_it_may_overlap() -> None:
    # 0.5 s on a clock whose windows start elsewhere can straddle two.
    assert accuracy.bound("window", 0, 500_000_000, local_clock=False) == (
        2 * accuracy.LIMIT
    )


def test_worst_window() -> None:
    second = 1_000_000_000
    assert accuracy.worst_window([0, 1, 2, second - 1, second + 5]) == 4
    assert accuracy.worst_window([0, second, 2 * second]) == 1


def test_accuracy_covers_the_shared_memory_limiters(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "bench",
        "accuracy",
        "--workers",
        "4",
        "--duration",
        "0.3",
        "--only",
        "(shm)",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ratefuse gcra (shm)" in out
    assert "OVER THE BOUND" not in out


@pytest.mark.parametrize(
    ("old", "new", "name"),
    [
        ("ratefuse.scenarios", "ratefuse.bench.scenarios", "limiter_scenarios"),
        (
            "ratefuse.scenarios_keyed",
            "ratefuse.bench.scenarios_keyed",
            "keyed_scenarios",
        ),
        ("ratefuse.scenarios_shm", "ratefuse.bench.scenarios_shm", "throughput"),
        ("ratefuse.bench.scenarios_keyed", "ratefuse.bench.scenarios", "Scenario"),
    ],
)
def test_the_scenarios_old_names_resolve_with_a_warning(
    old: str, new: str, name: str
) -> None:
    import importlib

    alias = importlib.import_module(old)
    old_name = "KeyedScenario" if name == "Scenario" else name
    with pytest.warns(DeprecationWarning, match="moved to|deprecated"):
        found = getattr(alias, old_name)
    assert found is getattr(importlib.import_module(new), name)
