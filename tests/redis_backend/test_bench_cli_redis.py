"""`ratefuse bench --redis` and `--redis-cluster` against the session's real
servers: a quick run of each, and the accuracy mode on a fleet quota."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratefuse.__main__ import main

ROUND_TRIP_FLOOR_NS = 2_000


def test_speed_on_a_single_redis(
    redis_node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "redis.json"
    url = f"redis://127.0.0.1:{redis_node.port}"
    argv = ["bench", "--quick", "--repeats", "1", "--redis", url, "--only", "redis"]
    assert main([*argv, "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "raw EVALSHA" in out
    assert "decide_many" in out
    rows = json.loads(report.read_text())["speed"]
    groups = {row["group"] for row in rows}
    assert groups == {"redis sequential", "redis decide_many x1000"}
    # Every sequential decision is a round trip, which from Python takes
    # tens of microseconds on loopback: none can take 2 us (a dropped
    # limiter answered from its deny cache at 124-259 ns, Redis never
    # asked). An absolute floor: the raw EVALSHA's own figure is as noisy
    # as the rows compared with it on a loaded machine.
    for row in rows:
        if row["group"] == "redis sequential":
            assert row["median_ns"] > ROUND_TRIP_FLOOR_NS, row


def test_speed_on_a_cluster(redis_cluster, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"redis://127.0.0.1:{redis_cluster.ports[0]}"
    argv = [
        "bench",
        "--quick",
        "--repeats",
        "1",
        "--redis-cluster",
        url,
        "--only",
        "cluster",
    ]
    assert main(argv) == 0
    assert "cluster sequential" in capsys.readouterr().out


def test_accuracy_on_a_fleet_quota(
    redis_node, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://127.0.0.1:{redis_node.port}"
    argv = ["bench", "accuracy", "--workers", "4", "--duration", "0.5", "--redis", url]
    report = tmp_path / "accuracy.json"
    assert main([*argv, "--only", "(redis)", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "ratefuse gcra (redis)" in out
    assert "OVER THE BOUND" not in out
    rows = json.loads(report.read_text())["accuracy"]
    assert len(rows) == 4
    for row in rows:  # each target really decided in Redis, and was used
        assert row["verdict"] == "holds", row
        assert row["admitted"] >= row["least"] / 2 > 0
