"""The Redis server's time per decision: `ratefuse bench --redis` reports
it beside wall time and client CPU (and in --json), and
benchmarks/redis_server_time.py compares it with the targets, on the
session's real single Redis."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ratefuse.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
RATEFUSE_CASES = {
    "ratefuse gcra",
    "ratefuse fixed_window",
    "ratefuse sliding_window",
    "ratefuse sliding_log",
    "ratefuse gcra x2 (compound)",
}
PEER_CASES = {
    "limits fixed window",
    "limits moving window",
    "limits sliding window counter",
}


def test_bench_reports_server_time(
    redis_node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{redis_node.port}"
    report = tmp_path / "redis.json"
    argv = ["bench", "--quick", "--repeats", "1", "--redis", url, "--peers"]
    argv += ["--only", "redis sequential", "--only", "server", "--json", str(report)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "redis server time" in out
    rows = json.loads(report.read_text())["redis_server_time"]
    by_case = {row["case"]: row for row in rows}
    minimal = {"minimal TIME+GET+SET PX", "minimal TIME+GET+SET PX (FCALL)"}
    floors = {"floor: one-integer state, binary"}
    assert set(by_case) == minimal | floors | RATEFUSE_CASES | PEER_CASES
    for row in rows:
        # One script call per decision for every case here, each of which
        # the server spent time on; wall time holds the round trip.
        assert row["commands_per_decision"] == 1.0, row
        assert 0 < row["server_us_per_decision"] < row["wall_us_per_decision"], row
        assert row["client_cpu_us_per_decision"] > 0, row
    assert by_case["minimal TIME+GET+SET PX"]["x_minimal_script"] == 1.0


def test_bench_without_server_in_only_skips_server_time(
    redis_node, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{redis_node.port}"
    argv = ["bench", "--quick", "--repeats", "1", "--redis", url]
    assert main([*argv, "--only", "raw EVALSHA"]) == 0
    assert "redis server time" not in capsys.readouterr().out


def test_the_target_script_reports_in_quick_mode(redis_node) -> None:
    url = f"redis://127.0.0.1:{redis_node.port}"
    script = ROOT / "benchmarks" / "redis_server_time.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--redis", url],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for name in RATEFUSE_CASES | PEER_CASES:
        assert name in done.stdout
    assert "target <= 1.2" in done.stdout
    assert "x limits moving window, target <= 1.0" in done.stdout
