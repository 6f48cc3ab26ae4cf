"""Selects the limiter engine: compiled unless disabled (see :mod:`._impl`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._engine_py import Decision, LimiterCore
else:
    from ._impl import load

    _engine = load("_engine")
    Decision = _engine.Decision
    LimiterCore = _engine.LimiterCore

__all__ = ["Decision", "LimiterCore"]
