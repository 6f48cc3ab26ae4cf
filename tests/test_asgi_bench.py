"""`ratefuse bench asgi` as CI runs it (--quick): real uvicorn servers in
processes of their own, driven by wrk when installed, and by the Python
load generator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ratefuse.bench import asgi


def test_quick_run_reports_both_variants(tmp_path: Path) -> None:
    out = tmp_path / "asgi.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ratefuse",
            "bench",
            "asgi",
            "--quick",
            "--repeats",
            "1",
            "--connections",
            "4",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert "middleware cost, req/s:" in result.stdout
    assert "all-headers cost, req/s:" in result.stdout
    assert "middleware adds" in result.stdout
    figures = json.loads(out.read_text())
    in_process = figures["in_process_cpu_us"]
    assert [len(values) for values in in_process.values()] == [1, 1, 1]
    assert [figure["variant"] for figure in figures["figures"]] == [
        "plain",
        "middleware",
        "all-headers",
    ]
    for figure in figures["figures"]:
        assert len(figure["rates"]) == 1
        assert figure["rates"][0] > 0
        assert len(figure["cpu_us"]) == 1  # Linux: /proc is there
        assert figure["cpu_us"][0] > 0


def test_python_load_generator_drives_every_server() -> None:
    figures = asgi.measure(1, 0.3, 4, tool="", warm_up=False)
    assert [figure.variant for figure in figures] == [
        "plain",
        "middleware",
        "all-headers",
    ]
    assert all(figure.rates[0] > 0 for figure in figures)
    lines = asgi.report(figures, "python load generator", 4)
    assert lines[-4].startswith("middleware cost, req/s: ")
    assert lines[-3].startswith("middleware cost, req/s per server core")
    assert lines[-1].startswith("all-headers cost, req/s per server core")


def test_bad_connections_is_refused() -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    result = subprocess.run(
        [sys.executable, "-m", "ratefuse", "bench", "asgi", "--connections", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode != 0
    assert "--connections must be >= 1, got 0" in result.stderr
