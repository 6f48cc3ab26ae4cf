"""`moved_module` serves the deprecated aliases of modules that moved into
the bench layer (``ratefuse.scenarios`` -> ``ratefuse.bench.scenarios``...):
every name still resolves, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def moved_module(old: str, new: str) -> Callable[[str], Any]:
    """`moved_module` is the module ``__getattr__`` of the alias ``old``:
    it warns that ``old`` moved to ``new`` and returns ``new``'s name."""

    def __getattr__(name: str) -> Any:
        warnings.warn(f"{old} moved to {new}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)

    return __getattr__
