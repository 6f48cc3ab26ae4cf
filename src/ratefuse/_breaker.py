"""Selects the breaker core: compiled unless disabled (see :mod:`._impl`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._breaker_call_py import GuardedFunction
    from ._breaker_py import BreakerCore, Permit
else:
    from ._impl import load

    _breaker = load("_breaker")
    BreakerCore = _breaker.BreakerCore
    Permit = _breaker.Permit
    GuardedFunction = load("_breaker_call").GuardedFunction

__all__ = ["BreakerCore", "GuardedFunction", "Permit"]
