"""Selects the fleet breaker's recorder: compiled unless disabled (see
:mod:`._impl`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._fleet_recorder_py import FleetPermit, Gate, Recorder
else:
    from ._impl import load

    _recorder = load("_fleet_recorder")
    FleetPermit = _recorder.FleetPermit
    Recorder = _recorder.Recorder
    Gate = _recorder.Gate

__all__ = ["FleetPermit", "Gate", "Recorder"]
