"""Chooses between the compiled cores and their pure-Python twins.

Every state machine comes as a triplet: ``ext/ratefuse/<path>_c.pyx``
(compiled), ``src/ratefuse/<path>_py.py`` (the reference, the spec in code)
and a selector that calls :func:`load` with ``<path>`` in dotted form (for
example ``"engine._subject"``). The choice is made once per process, for
all cores together, so a process never mixes the two:

- ``RATEFUSE_NO_EXTENSIONS=1`` forces the reference cores;
- the pure-Python wheel (built with ``RATEFUSE_PURE_WHEEL=1``, marked by
  the file ``PURE_PYTHON`` beside this module) has no compiled cores and
  selects the reference ones without a warning;
- a missing or broken extension falls back to them with a warning;
- ``RATEFUSE_REQUIRE_EXTENSIONS=1`` turns that fallback into ImportError.
"""

from __future__ import annotations

import importlib
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Final, Literal

Implementation = Literal["cython", "python"]

# Every compiled core, as a dotted path under ratefuse without its _c/_py
# suffix; a new core adds its path here.
CORE_STEMS: Final = (
    "engine._subject",
    "engine._keyed",
    "engine._breaker",
    "engine._shm",
    "core._lease",
    "core.breaker._fleet_recorder",
    "core.adaptive._limit",
)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


NO_EXTENSIONS: Final = _flag("RATEFUSE_NO_EXTENSIONS")
REQUIRE_EXTENSIONS: Final = _flag("RATEFUSE_REQUIRE_EXTENSIONS")
# An install of the pure-Python wheel, which has no compiled core to load.
PURE_WHEEL: Final = Path(__file__).with_name("PURE_PYTHON").is_file()


def _choose() -> Implementation:
    if NO_EXTENSIONS:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                "RATEFUSE_REQUIRE_EXTENSIONS and RATEFUSE_NO_EXTENSIONS are both set"
            )
        return "python"
    if PURE_WHEEL:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                "ratefuse is installed from its pure-Python wheel (no compiled "
                "cores) and RATEFUSE_REQUIRE_EXTENSIONS is set"
            )
        return "python"
    try:
        for stem in CORE_STEMS:
            importlib.import_module(f"ratefuse.{stem}_c")
    except ImportError as exc:
        if REQUIRE_EXTENSIONS:
            raise ImportError(
                f"ratefuse compiled extension {stem}_c is unavailable "
                f"and RATEFUSE_REQUIRE_EXTENSIONS is set: {exc}"
            ) from exc
        warnings.warn(
            f"ratefuse compiled extension {stem}_c is unavailable ({exc}); "
            "using the pure-Python cores",
            RuntimeWarning,
            stacklevel=3,
        )
        return "python"
    return "cython"


IMPLEMENTATION: Final[Implementation] = _choose()


def load(stem: str, implementation: Implementation | None = None) -> ModuleType:
    """`load` returns the core module ``stem`` (a dotted path under ratefuse,
    such as ``"engine._subject"``) of the given implementation.

    None means the process-wide choice, :data:`IMPLEMENTATION`.
    """
    chosen = IMPLEMENTATION if implementation is None else implementation
    suffix = "_c" if chosen == "cython" else "_py"
    return importlib.import_module(f"ratefuse.{stem}{suffix}")
