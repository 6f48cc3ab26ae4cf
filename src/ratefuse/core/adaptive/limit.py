"""Selects the adaptive concurrency limit's core: compiled unless disabled
(see :mod:`ratefuse.core.implementation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.core.adaptive._limit_py import AdaptiveCore, AdaptivePermit
else:
    from ratefuse.core.implementation import load

    _limit = load("core.adaptive._limit")
    AdaptiveCore = _limit.AdaptiveCore
    AdaptivePermit = _limit.AdaptivePermit

__all__ = ["AdaptiveCore", "AdaptivePermit"]
