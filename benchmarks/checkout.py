"""`use_checkout`: how a benchmark script run as ``python benchmarks/X.py``
finds ratefuse and the test suite's helpers (the server fixtures)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def use_checkout(tests: bool = False) -> None:
    """`use_checkout` makes ratefuse importable: the installed package if
    there is one (CI installs the compiled build; a development install is
    this checkout anyway), else this checkout's src (built in place); with
    ``tests``, the test suite's helpers too."""
    if importlib.util.find_spec("ratefuse") is None:
        sys.path.insert(0, str(ROOT / "src"))
    if tests:
        sys.path.insert(1, str(ROOT / "tests"))
