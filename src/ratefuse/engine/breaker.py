"""Selects the breaker core: compiled unless disabled (see :mod:`._impl`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.engine._breaker_call_py import GuardedFunction
    from ratefuse.engine._breaker_py import BreakerCore, Permit
else:
    from ratefuse.core.implementation import load

    _breaker = load("engine._breaker")
    BreakerCore = _breaker.BreakerCore
    Permit = _breaker.Permit
    GuardedFunction = load("engine._breaker_call").GuardedFunction

__all__ = ["BreakerCore", "GuardedFunction", "Permit"]
