"""Selects the keyed engine: compiled unless disabled (see
:mod:`ratefuse.core.implementation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.engine._keyed_py import KeyedLimiterCore
else:
    from ratefuse.core.implementation import load

    KeyedLimiterCore = load("engine._keyed").KeyedLimiterCore

__all__ = ["KeyedLimiterCore"]
