"""Selects the keyed engine: compiled unless disabled (see :mod:`._impl`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._keyed_py import KeyedLimiterCore
else:
    from ._impl import load

    KeyedLimiterCore = load("_keyed").KeyedLimiterCore

__all__ = ["KeyedLimiterCore"]
