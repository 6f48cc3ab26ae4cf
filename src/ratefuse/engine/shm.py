"""Selects the shared-memory cores: compiled unless disabled (see
:mod:`ratefuse.core.implementation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.engine._shm_py import ShmKeyedLimiterCore, ShmLimiterCore
else:
    from ratefuse.core.implementation import load

    _cores = load("engine._shm")
    ShmKeyedLimiterCore = _cores.ShmKeyedLimiterCore
    ShmLimiterCore = _cores.ShmLimiterCore

__all__ = ["ShmKeyedLimiterCore", "ShmLimiterCore"]
