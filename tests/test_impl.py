"""Implementation selection: RATEFUSE_NO_EXTENSIONS, _REQUIRE_EXTENSIONS.

Each case runs in a fresh interpreter, since the choice is made once per
process. A broken extension is simulated by blocking its import.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

BLOCK_ENGINE = "import sys; sys.modules['ratefuse.engine._subject_c'] = None; "
REPORT = (
    "import ratefuse; print(ratefuse.IMPLEMENTATION, ratefuse.Limiter('1/s').decide())"
)


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("RATEFUSE_NO_EXTENSIONS", "RATEFUSE_REQUIRE_EXTENSIONS")
    }
    return subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_no_extensions_forces_the_reference_cores() -> None:
    result = run(REPORT, RATEFUSE_NO_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("python Decision(allowed=True")


def test_default_is_compiled_when_built(compiled) -> None:
    result = run(REPORT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cython ")


def test_require_extensions_with_a_working_build(compiled) -> None:
    result = run(REPORT, RATEFUSE_REQUIRE_EXTENSIONS="1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("cython ")


def test_broken_extension_falls_back_with_a_warning() -> None:
    result = run(
        BLOCK_ENGINE + "import warnings; warnings.simplefilter('default');" + REPORT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("python ")
    assert "RuntimeWarning" in result.stderr
    assert "engine._subject_c is unavailable" in result.stderr


def test_broken_extension_is_an_import_error_when_required() -> None:
    result = run(BLOCK_ENGINE + REPORT, RATEFUSE_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert "ImportError" in result.stderr
    assert "RATEFUSE_REQUIRE_EXTENSIONS" in result.stderr


@pytest.mark.parametrize("value", ["0", "", "false", "no"])
def test_falsy_flag_values_do_not_disable(compiled, value: str) -> None:
    result = run(REPORT, RATEFUSE_NO_EXTENSIONS=value)
    assert result.stdout.startswith("cython "), result.stderr


def test_contradictory_flags_are_refused() -> None:
    result = run(REPORT, RATEFUSE_NO_EXTENSIONS="1", RATEFUSE_REQUIRE_EXTENSIONS="1")
    assert result.returncode != 0
    assert "both set" in result.stderr
