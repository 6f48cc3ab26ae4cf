"""Selects the limiter engine: compiled unless disabled (see
:mod:`ratefuse.core.implementation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratefuse.core.decision import Decision

if TYPE_CHECKING:
    from ratefuse.engine._subject_py import LimiterCore
else:
    from ratefuse.core.implementation import load

    LimiterCore = load("engine._subject").LimiterCore

__all__ = ["Decision", "LimiterCore"]
