"""`AdaptiveLimiter`: a concurrency limit that finds itself from latency.

A drop-in for :class:`~ratefuse.bulkhead.Bulkhead` where the right number
of concurrent calls is not known or changes: the limit moves with each
call's measured latency and outcome, by one of the algorithms of
:mod:`ratefuse.core.adaptive.config` (`AIMD`, `Vegas`, `Gradient2`)::

    limiter = AdaptiveLimiter(Vegas(initial_limit=20), max_wait=0.05)

    @limiter
    async def fetch(url): ...

    with limiter:
        ...

    permit = limiter.try_acquire()      # the fast path: a permit or None
    if permit is not None:
        try:
            ...
        except Exception:
            permit.drop()
            raise
        permit.release()

A call ending with an exception of ``drop_on`` (default: any Exception)
feeds the limit as a drop; any other BaseException (cancellation) returns
the slot without a sample. Callers that wait do so in one FIFO queue shared
by threads and tasks, as the Bulkhead's.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Final

from ratefuse.adaptive_stats import AdaptiveLimitFullError, AdaptiveStats
from ratefuse.core.adaptive.config import AIMD, AdaptiveAlgorithm, Gradient2, Vegas
from ratefuse.core.adaptive.limit import AdaptiveCore, AdaptivePermit
from ratefuse.core.args import is_exception_types
from ratefuse.core.errors import DeadlineExceeded
from ratefuse.engine.slot_queue import SlotQueue, Waiter, check_wait

DEFAULT_DROP_ON: Final[tuple[type[BaseException], ...]] = (Exception,)

__all__ = [
    "AIMD",
    "AdaptiveLimitFullError",
    "AdaptiveLimiter",
    "AdaptivePermit",
    "AdaptiveStats",
    "Gradient2",
    "Vegas",
]


class AdaptiveLimiter(SlotQueue[AdaptivePermit]):
    """`AdaptiveLimiter` admits calls up to a limit its ``algorithm``
    (default ``Vegas()``) adjusts from their latencies.

    ``max_wait`` (seconds; 0.0, the default: no wait; inf: forever) is how
    long a call waits for a slot before AdaptiveLimitFullError. ``clock``
    returns integer nanoseconds (None: the monotonic clock, read in C by the
    compiled core) and times the calls. ``drop_on``: the exceptions that
    count as drops. Thread-safe and asyncio-safe.
    """

    def __init__(
        self,
        algorithm: AdaptiveAlgorithm | None = None,
        max_wait: float = 0.0,
        *,
        name: str = "adaptive",
        clock: Callable[[], int] | None = None,
        drop_on: tuple[type[BaseException], ...] = DEFAULT_DROP_ON,
    ) -> None:
        chosen = Vegas() if algorithm is None else algorithm
        if not isinstance(chosen, (AIMD, Vegas, Gradient2)):
            raise TypeError(
                f"algorithm must be AIMD, Vegas or Gradient2, got {algorithm!r}"
            )
        if not is_exception_types(drop_on):
            raise TypeError(
                f"drop_on must be a tuple of exception types, got {drop_on!r}"
            )
        self._algorithm = chosen
        self._max_wait = check_wait("max_wait", max_wait)
        self._name = str(name)
        self._drop_on = drop_on
        self._lock = threading.Lock()
        self._waiters: deque[Waiter[AdaptivePermit]] = deque()
        self._rejected = 0
        self._core = AdaptiveCore(chosen.to_params(), clock, self._hand_off)
        self._held: ContextVar[tuple[AdaptivePermit, ...]] = ContextVar(
            f"ratefuse.adaptive.{self._name}", default=()
        )

    @property
    def name(self) -> str:
        """`name` names the limiter in errors, stats and metrics."""
        return self._name

    @property
    def algorithm(self) -> AdaptiveAlgorithm:
        """`algorithm` is the config the limit moves by."""
        return self._algorithm

    @property
    def core(self) -> AdaptiveCore:
        """`core` is the limit's state machine (read-only use)."""
        return self._core

    @property
    def limit(self) -> int:
        """`limit` is the number of calls admitted at once now."""
        return self._core.limit

    @property
    def in_flight(self) -> int:
        """`in_flight` is the number of calls holding a slot now."""
        return self._core.in_flight

    @property
    def max_wait(self) -> float:
        """`max_wait` is the default wait for a slot, in seconds."""
        return self._max_wait

    def stats(self) -> AdaptiveStats:
        """`stats` snapshots the limit, its load and its measured latencies."""
        core = self._core
        return AdaptiveStats(
            name=self._name,
            algorithm=type(self._algorithm).__name__,
            limit=core.limit,
            in_flight=core.in_flight,
            waiting=core.waiting,
            rejected=self._rejected,
            samples=core.samples,
            drops=core.drops,
            min_rtt=core.min_rtt_ns / 1e9,
            smoothed_rtt=core.smoothed_rtt_ns / 1e9,
            long_rtt=core.long_rtt_ns / 1e9,
            last_rtt=core.last_rtt_ns / 1e9,
        )

    def health(self) -> dict[str, Any]:
        """`health` is the limit's state as JSON-ready values: ``limit``,
        ``in_flight``, ``waiting``, ``at_floor`` (the limit is at its
        ``min_limit``: the dependency is struggling) and the smoothed and
        no-load latencies in ms."""
        stats = self.stats()
        return {
            "algorithm": stats.algorithm,
            "limit": stats.limit,
            "in_flight": stats.in_flight,
            "waiting": stats.waiting,
            "at_floor": stats.limit <= self._algorithm.min_limit,
            "smoothed_rtt_ms": round(stats.smoothed_rtt * 1000, 3),
            "min_rtt_ms": round(stats.min_rtt * 1000, 3),
        }

    def try_acquire(self) -> AdaptivePermit | None:
        """`try_acquire` gives a permit if a slot is free now and nobody
        waits, else None; it never waits and counts nothing as rejected.
        Return the permit with `release`, `drop` or `ignore`."""
        return self._core.try_acquire()

    def _hand_off(self) -> None:
        # Called by the core after a slot is freed while callers wait: gives
        # free slots to the longest waiters, first come first served.
        while True:
            with self._lock:
                if not self._waiters:
                    return
                permit = self._core.grant_at(self._core.now_ns())
                if permit is None:
                    return
                waiter = self._waiters.popleft()
                self._core.dequeue()
                waiter.granted = True
                waiter.slot = permit
            if not waiter.wake():
                # Its loop is closed: the slot goes on instead of being lost.
                with self._lock:
                    waiter.granted = False
                    waiter.slot = None
                permit.ignore()

    def _enter_or_queue(
        self,
        wait: float,
        by_deadline: bool,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> AdaptivePermit | Waiter[AdaptivePermit]:
        permit = self._core.try_acquire()
        if permit is not None:
            return permit
        with self._lock:
            if not self._waiters:
                # A slot may have been freed since the lock-free attempt.
                permit = self._core.try_acquire()
                if permit is not None:
                    return permit
            if wait <= 0.0:
                self._rejected += 1
                raise self._error(wait, by_deadline)
            waiter: Waiter[AdaptivePermit] = Waiter(loop)
            self._waiters.append(waiter)
            self._core.enqueue()
        # A slot freed before the enqueue notified nobody: offer it now.
        self._hand_off()
        return waiter

    def _give_up(self, waiter: Waiter[AdaptivePermit], count: bool) -> bool:
        # The waiter stops waiting; true if it was handed a permit meanwhile.
        with self._lock:
            if waiter.granted:
                return True
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                self._core.dequeue()
            if count:
                self._rejected += 1
        # Newcomers were held back while it waited; a free slot is theirs now.
        self._hand_off()
        return False

    def _give_back(self, slot: AdaptivePermit) -> None:
        slot.ignore()

    def _error(
        self, wait: float, by_deadline: bool
    ) -> AdaptiveLimitFullError | DeadlineExceeded:
        # What a caller that waited ``wait`` seconds in vain gets: the
        # deadline's error if the running call's deadline cut the wait.
        if by_deadline:
            return DeadlineExceeded("adaptive", None, wait)
        return AdaptiveLimitFullError(self._name, self._core.limit, wait)

    def finish(self, permit: AdaptivePermit, exc: BaseException | None) -> None:
        """`finish` returns ``permit`` for a call that ended with ``exc``
        (None: success): a success feeds its latency, an exception of
        ``drop_on`` a drop, any other exception no sample."""
        if exc is None:
            permit.release()
        elif isinstance(exc, self._drop_on):
            permit.drop()
        else:
            permit.ignore()

    def __enter__(self) -> AdaptivePermit:
        permit = self.acquire()
        self._held.set((*self._held.get(), permit))
        return permit

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        held = self._held.get()
        self._held.set(held[:-1])
        self.finish(held[-1], exc)

    async def __aenter__(self) -> AdaptivePermit:
        permit = await self.acquire_async()
        self._held.set((*self._held.get(), permit))
        return permit

    async def __aexit__(
        self, exc_type: object, exc: BaseException | None, tb: object
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    _end = finish  # a call's end is `finish`, without a frame between

    def __repr__(self) -> str:
        return (
            f"<AdaptiveLimiter {self._name!r} {type(self._algorithm).__name__} "
            f"{self._core.in_flight}/{self._core.limit} in use, "
            f"{self._core.waiting} waiting>"
        )
