"""Deprecated alias: the benchmark scenarios moved to
:mod:`ratefuse.bench.scenarios` (the bench layer). Every name still resolves,
with a DeprecationWarning; the alias goes away in 0.3."""

from __future__ import annotations

import warnings
from typing import Any

from ratefuse.bench import scenarios as _moved


def __getattr__(name: str) -> Any:
    warnings.warn(
        "ratefuse.scenarios moved to ratefuse.bench.scenarios",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_moved, name)
