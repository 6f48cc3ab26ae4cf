"""Selects the breaker core: compiled unless disabled (see
:mod:`ratefuse.core.implementation`). ``GuardedFunction`` is the core's
sync decorator: the compiled one, or the shared form of
:mod:`ratefuse.engine.breaker_forms` that is its spec."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.engine._breaker_py import BreakerCore, Permit
    from ratefuse.engine.breaker_forms import GuardedFunction
else:
    from ratefuse.core.implementation import load

    _breaker = load("engine._breaker")
    BreakerCore = _breaker.BreakerCore
    Permit = _breaker.Permit
    GuardedFunction = _breaker.GuardedFunction

__all__ = ["BreakerCore", "GuardedFunction", "Permit"]
