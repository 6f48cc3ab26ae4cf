"""The pure-Python wheel's selection: the reference cores, with no warning.

A pure wheel (built with RATEFUSE_PURE_WHEEL=1) is the package without any
compiled core plus the marker file core/PURE_PYTHON. Each case copies the
Python sources into a temporary folder, so that no compiled core is
importable, and runs a fresh interpreter there (the choice is made once per
process). wheels/test_artifacts.py installs the real wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import ratefuse

REPORT = (
    "import ratefuse; print(ratefuse.IMPLEMENTATION, ratefuse.Limiter('1/s').decide())"
)


def copy_sources(into: Path, *, marked: bool) -> Path:
    """copy_sources copies ratefuse's Python files, without compiled cores."""
    package = Path(ratefuse.__file__).parent
    shutil.copytree(
        package,
        into / "ratefuse",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__", "PURE_PYTHON"),
    )
    if marked:
        (into / "ratefuse" / "core" / "PURE_PYTHON").write_text("pure\n")
    return into


def run(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RATEFUSE_NO_EXTENSIONS", "RATEFUSE_REQUIRE_EXTENSIONS")
    }
    return subprocess.run(
        [sys.executable, "-W", "error", "-c", REPORT],
        env={**clean, "PYTHONPATH": str(path), **env},
        cwd=path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_pure_wheel_selects_the_reference_cores_without_a_warning(
    tmp_path: Path,
) -> None:
    result = run(copy_sources(tmp_path, marked=True))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("python Decision(allowed=True")


def test_pure_wheel_refuses_required_extensions(tmp_path: Path) -> None:
    result = run(copy_sources(tmp_path, marked=True), RATEFUSE_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert "pure-Python wheel" in result.stderr
    assert "RATEFUSE_REQUIRE_EXTENSIONS" in result.stderr


def test_missing_cores_without_the_marker_still_warn(tmp_path: Path) -> None:
    # A compiled install that lost a core is a broken install: it keeps
    # warning (an error here, under -W error).
    result = run(copy_sources(tmp_path, marked=False))
    assert result.returncode != 0
    assert "RuntimeWarning" in result.stderr
