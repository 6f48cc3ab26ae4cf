"""The fleet breaker's settings checks and counters."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, fields
from typing import Final

# Outcomes buffered before the flusher is woken.
DEFAULT_BATCH_SIZE: Final = 64
# Seconds between flushes (and fleet-state polls) when fewer are buffered;
# also how often a fallen-back breaker tries Redis again.
DEFAULT_FLUSH_INTERVAL: Final = 0.05
# Seconds an unused fleet breaker keeps its state in Redis, beyond its wait.
DEFAULT_IDLE_TTL: Final = 3600.0
# Outcomes buffered at most; beyond, outcomes are dropped and counted.
DEFAULT_MAX_PENDING: Final = 16384
# A probe whose process dies never reports, and its slot would hold the
# whole fleet HALF_OPEN forever: a fleet breaker without an explicit
# max_half_open_duration ends a probe round after this many seconds.
DEFAULT_FLEET_MAX_HALF_OPEN: Final = 60.0
# Largest fleet windows: a count window is a string of one byte per call,
# and a time window's buckets are evicted by a loop in the script.
MAX_FLEET_WINDOW_SIZE: Final = 1 << 20
MAX_FLEET_WINDOW_BUCKETS: Final = 1000
MAX_BATCH_SIZE: Final = 4096


@dataclass(frozen=True)
class FleetBreakerStats:
    """`FleetBreakerStats` is a snapshot of a fleet breaker's counters, all
    since construction.

    flushes: script calls that recorded a batch or polled the fleet state.
    outcomes_flushed: outcomes sent to Redis in those batches.
    outcomes_dropped: outcomes not counted by the fleet: of a generation
        the fleet had left (stale), beyond the buffer's capacity, or in a
        flush that failed (a flush that timed out may still have run on a
        slow Redis).
    probe_requests: script calls asking for a fleet-wide permit (OPEN past
        its wait, or HALF_OPEN).
    probes_granted: fleet-wide probe permits this process received.
    fallbacks: times Redis was lost and the local breaker took over.
    recoveries: times Redis answered again and the fleet took over back.
    redis_errors: script calls that failed (connection, timeout, error).
    transitions: state changes this process saw (fleet or local).
    rejected_calls: calls rejected while following the fleet.
    """

    flushes: int = 0
    outcomes_flushed: int = 0
    outcomes_dropped: int = 0
    probe_requests: int = 0
    probes_granted: int = 0
    fallbacks: int = 0
    recoveries: int = 0
    redis_errors: int = 0
    transitions: int = 0
    rejected_calls: int = 0


STAT_NAMES: Final = tuple(field.name for field in fields(FleetBreakerStats))


class FleetCounters:
    """`FleetCounters` accumulates FleetBreakerStats; thread-safe."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(STAT_NAMES, 0)

    def add(self, name: str, amount: int = 1) -> None:
        """`add` adds ``amount`` to the counter ``name``."""
        with self._lock:
            self._counts[name] += amount

    def snapshot(self, dropped: int) -> FleetBreakerStats:
        """`snapshot` is the counters, with ``dropped`` outcomes added to
        those counted here (the recorder counts its own)."""
        with self._lock:
            counts = dict(self._counts)
        counts["outcomes_dropped"] += dropped
        return FleetBreakerStats(**counts)


def check_int(field: str, value: object, low: int, high: int) -> int:
    """`check_int` returns ``value`` or raises ValueError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an int, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{field} must be in [{low}, {high}], got {value}")
    return value


def check_seconds(field: str, value: object, low: float, high: float) -> float:
    """`check_seconds` returns ``value`` as float seconds in [low, high] or
    raises ValueError naming ``field``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not (math.isfinite(seconds) and low <= seconds <= high):
        raise ValueError(f"{field} must be in [{low}, {high}] seconds, got {value!r}")
    return seconds
