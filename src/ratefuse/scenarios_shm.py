"""Deprecated alias: the benchmark scenarios moved to
:mod:`ratefuse.bench.scenarios_shm` (the bench layer). Every name still resolves,
with a DeprecationWarning; the alias goes away in 0.3."""

from __future__ import annotations

import warnings
from typing import Any

from ratefuse.bench import scenarios_shm as _moved


def __getattr__(name: str) -> Any:
    warnings.warn(
        "ratefuse.scenarios_shm moved to ratefuse.bench.scenarios_shm",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(_moved, name)


if __name__ == "__main__":  # pragma: no cover
    __getattr__("main")()
