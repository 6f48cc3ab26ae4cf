"""What the batch path (``decide_many``) of both keyed engines shares."""

from __future__ import annotations

from typing import Any


def import_numpy() -> Any:
    """`import_numpy` imports numpy, the ``numpy`` extra that decide_many
    needs, or raises ImportError saying how to install it."""
    try:
        import numpy
    except ImportError as exc:  # pragma: no cover - exercised without numpy
        raise ImportError(
            "decide_many needs numpy: pip install 'ratefuse[numpy]'"
        ) from exc
    return numpy
