"""The fleet breaker's outcome recorder, reference implementation: the spec
of ``_fleet_recorder_c``.

A fleet breaker (:mod:`ratefuse.redis.fleet_breaker`) does not decide on
each outcome: it buffers them, one byte per call, and a flusher sends them
to Redis in small batches. `Recorder` is that buffer and `FleetPermit` the
two-step permit that writes to it; `Gate` answers ``try_acquire`` in
CLOSED. Recording an outcome and asking for a permit in CLOSED then cost
about what a local breaker's do (the compiled twins run no Python code on
the common path). Outcome bytes: bit 0 failed, bit 1 slow, bit 2 ignored.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

from ratefuse.core.breaker.spec import FAILURE, IGNORED, duration_to_ns

FAILED_BIT: Final = 1
SLOW_BIT: Final = 2
IGNORED_BIT: Final = 4


class Recorder:
    """`Recorder` buffers the outcomes of the calls permitted in its current
    ``generation`` until `take`.

    ``capacity`` (>= 1) bounds the buffer: outcomes beyond it are dropped and
    counted in ``dropped``; outcomes of another generation are dropped and
    counted in ``stale``. ``wake()`` is called when the buffer reaches
    ``batch_size`` (>= 1) outcomes. ``slow_call_ns`` (0: off) is the
    duration beyond which a call is slow. Thread-safe.
    """

    __slots__ = (
        "_buffer",
        "_lock",
        "_wake",
        "batch_size",
        "capacity",
        "dropped",
        "generation",
        "slow_call_ns",
        "stale",
    )

    def __init__(
        self,
        capacity: int,
        batch_size: int,
        slow_call_ns: int,
        wake: Callable[[], object],
    ) -> None:
        if capacity < 1 or batch_size < 1:
            raise ValueError(
                f"capacity and batch_size must be >= 1, got {capacity}, {batch_size}"
            )
        self._buffer = bytearray()
        self._lock = threading.Lock()
        self._wake = wake
        self.capacity = capacity
        self.batch_size = batch_size
        self.slow_call_ns = slow_call_ns
        self.generation = 0
        self.dropped = 0
        self.stale = 0

    def push(self, generation: int, flags: int) -> None:
        """`push` buffers one outcome of a call permitted in ``generation``."""
        with self._lock:
            if generation != self.generation:
                self.stale += 1
                return
            buffer = self._buffer
            if len(buffer) >= self.capacity:
                self.dropped += 1
                return
            buffer.append(flags)
            full = len(buffer) == self.batch_size
        if full:
            self._wake()

    def take(self) -> tuple[int, bytes]:
        """`take` empties the buffer: (its generation, its outcome bytes)."""
        with self._lock:
            taken = bytes(self._buffer)
            self._buffer.clear()
            return self.generation, taken

    def set_generation(self, generation: int) -> None:
        """`set_generation` makes ``generation`` current; outcomes buffered
        for another one are dropped as stale."""
        with self._lock:
            if generation != self.generation:
                self.stale += len(self._buffer)
                self._buffer.clear()
                self.generation = generation

    def pending(self) -> int:
        """`pending` is the number of buffered outcomes."""
        return len(self._buffer)

    def slow_flag(self, duration: float) -> int:
        """`slow_flag` is SLOW_BIT if a call of ``duration`` seconds is slow,
        else 0; ValueError for a negative or NaN duration."""
        duration_ns = duration_to_ns(duration)  # checked even when not timed
        return SLOW_BIT if 0 < self.slow_call_ns < duration_ns else 0

    def wake(self) -> None:
        """`wake` asks the flusher to flush now."""
        self._wake()


def outcome_flags(outcome: int, slow_flag: int) -> int:
    """`outcome_flags` is the byte of an outcome (SUCCESS, FAILURE,
    IGNORED) of a call whose slow bit is ``slow_flag``."""
    if outcome == IGNORED:
        return IGNORED_BIT
    return slow_flag | (FAILED_BIT if outcome == FAILURE else 0)


class FleetPermit:
    """`FleetPermit` lets one call go ahead; report its outcome exactly once
    with `on_success`, `on_error`, `on_result` or `release`.

    ``core`` classifies exceptions and results (``classify_exception`` and
    ``classify_result``, as a breaker does); the outcome goes to
    ``recorder`` under ``generation``. A ``probe`` permit (HALF_OPEN) also
    wakes the flusher, since the fleet waits for its outcome. ``now`` is
    accepted for compatibility with :class:`ratefuse.breaker.Permit` and
    not used: the fleet dates outcomes when they are flushed. Thread-safe.
    """

    __slots__ = ("_core", "_probe", "_recorder", "generation")

    def __init__(
        self, core: Any, recorder: Recorder, generation: int, probe: bool = False
    ) -> None:
        self._core = core
        self._recorder = recorder
        self.generation = generation
        self._probe = probe

    def _push(self, flags: int) -> None:
        self._recorder.push(self.generation, flags)
        if self._probe:
            self._recorder.wake()

    def on_success(self, duration: float, now: int | None = None) -> None:
        """`on_success` records a call that returned normally."""
        self._push(self._recorder.slow_flag(duration))

    def on_error(
        self, duration: float, exc: BaseException, now: int | None = None
    ) -> None:
        """`on_error` records a call that raised ``exc``, classified by the
        breaker's exception rules."""
        self._classified(self._core.classify_exception, exc, duration)

    def on_result(
        self, duration: float, result: object, now: int | None = None
    ) -> None:
        """`on_result` records a call that returned ``result``, classified by
        the breaker's result predicate."""
        self._classified(self._core.classify_result, result, duration)

    def _classified(
        self, classify: Callable[[Any], int], value: object, duration: float
    ) -> None:
        # Pushes the outcome classify(value); if classify itself raises, the
        # call is pushed as IGNORED (freeing a probe) and that error wins.
        slow = self._recorder.slow_flag(duration)
        try:
            outcome = classify(value)
        except BaseException:
            self._push(IGNORED_BIT)
            raise
        self._push(outcome_flags(outcome, slow))

    def release(self, now: int | None = None) -> None:
        """`release` gives the permit back unused: nothing is recorded, and
        a fleet-wide probe slot is freed."""
        self._push(IGNORED_BIT)

    def __repr__(self) -> str:
        return f"FleetPermit(generation={self.generation}, probe={self._probe})"


class Gate:
    """`Gate` answers a fleet breaker's `try_acquire`: ``permit`` while it
    is set (the breaker sets it in CLOSED and DISABLED), else
    ``slow_path(now)``; a call with an explicit ``now`` always takes the
    slow path. The common case costs no Python frame. Thread-safe."""

    __slots__ = ("_slow_path", "permit")

    def __init__(self, slow_path: Callable[[int | None], Any]) -> None:
        self._slow_path = slow_path
        self.permit: Any = None

    def try_acquire(self, now: int | None = None) -> Any:
        """`try_acquire` is the permit, or the slow path's answer."""
        permit = self.permit
        if permit is not None and now is None:
            return permit
        return self._slow_path(now)
