"""Selects the fleet breaker's recorder: compiled unless disabled (see
:mod:`ratefuse.core.implementation`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.core.breaker._fleet_recorder_py import FleetPermit, Gate, Recorder
else:
    from ratefuse.core.implementation import load

    _recorder = load("core.breaker._fleet_recorder")
    FleetPermit = _recorder.FleetPermit
    Recorder = _recorder.Recorder
    Gate = _recorder.Gate

__all__ = ["FleetPermit", "Gate", "Recorder"]
