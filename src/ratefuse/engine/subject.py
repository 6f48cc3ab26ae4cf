"""Selects the limiter engine: compiled unless disabled (see :mod:`._impl`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.engine._subject_py import Decision, LimiterCore
else:
    from ratefuse.core.implementation import load

    _engine = load("engine._subject")
    Decision = _engine.Decision
    LimiterCore = _engine.LimiterCore

__all__ = ["Decision", "LimiterCore"]
