"""Selects `ThrottleCore`: compiled unless disabled (see
:mod:`ratefuse.core.implementation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.core._throttle_py import DRAW_RANGE, ThrottleCore
else:
    from ratefuse.core.implementation import load

    _throttle = load("core._throttle")
    DRAW_RANGE = _throttle.DRAW_RANGE
    ThrottleCore = _throttle.ThrottleCore

__all__ = ["DRAW_RANGE", "ThrottleCore"]
