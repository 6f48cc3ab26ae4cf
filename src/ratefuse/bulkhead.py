"""`Bulkhead`: a concurrency limit with a bounded wait, for threads and tasks.

A bulkhead stops one slow dependency from tying up every worker: at most
``max_concurrent`` calls run at once, and a call that finds them all busy
waits at most ``max_wait`` seconds for one to finish before it is rejected
with :class:`BulkheadFullError`::

    bulkhead = Bulkhead(max_concurrent=10, max_wait=0.05)

    @bulkhead
    async def fetch(url): ...

    with bulkhead:
        ...

Sync and async callers share one bulkhead and one FIFO queue of waiters: a
freed slot is handed to the longest waiter, thread or task, so a stream of
newcomers cannot starve it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from typing import Final, ParamSpec, TypeVar

from ratefuse.core.errors import BulkheadFullError, DeadlineExceeded, RatefuseError
from ratefuse.engine.slot_queue import SlotQueue, Waiter, check_wait

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_MAX_WAIT: Final = 0.0

__all__ = ["DEFAULT_MAX_WAIT", "Bulkhead", "BulkheadFullError"]


class Bulkhead(SlotQueue[None]):
    """`Bulkhead` lets at most ``max_concurrent`` (>= 1) calls run at once.

    A call that finds every slot busy waits up to ``max_wait`` seconds (0.0,
    the default: not at all; ``inf``: forever) for one, first come first
    served, then raises BulkheadFullError. ``name`` names it in errors.
    Thread-safe and asyncio-safe; sync and async callers may share it, and
    `release` may be called from any thread.
    """

    def __init__(
        self,
        max_concurrent: int,
        max_wait: float = DEFAULT_MAX_WAIT,
        *,
        name: str = "bulkhead",
    ) -> None:
        if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
            raise ValueError(f"max_concurrent must be an int, got {max_concurrent!r}")
        if max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {max_concurrent}")
        self._max_concurrent = max_concurrent
        self._max_wait = check_wait("max_wait", max_wait)
        self._name = str(name)
        self._lock = threading.Lock()
        self._in_use = 0
        self._rejected = 0
        self._waiters: deque[Waiter[None]] = deque()

    @property
    def name(self) -> str:
        """`name` names the bulkhead in errors."""
        return self._name

    @property
    def max_concurrent(self) -> int:
        """`max_concurrent` is the number of slots."""
        return self._max_concurrent

    @property
    def max_wait(self) -> float:
        """`max_wait` is the default wait for a slot, in seconds."""
        return self._max_wait

    @property
    def in_use(self) -> int:
        """`in_use` is the number of slots held now."""
        return self._in_use

    @property
    def available(self) -> int:
        """`available` is the number of free slots now."""
        return self._max_concurrent - self._in_use

    @property
    def waiting(self) -> int:
        """`waiting` is the number of callers queued for a slot now."""
        return len(self._waiters)

    @property
    def rejected(self) -> int:
        """`rejected` counts calls rejected since construction."""
        return self._rejected

    def _error(self, wait: float, by_deadline: bool) -> RatefuseError:
        # What a caller that waited ``wait`` seconds in vain gets: the
        # deadline's error if the deadline cut its wait short.
        if by_deadline:
            return DeadlineExceeded("bulkhead", None, wait)
        return BulkheadFullError(self._name, self._max_concurrent, wait)

    def _enter_or_queue(
        self,
        wait: float,
        by_deadline: bool,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> Waiter[None] | None:
        # Takes a free slot (None), queues a waiter, or raises if it may not
        # wait. Free slots exist only while nobody waits (release hands a
        # slot straight to the first waiter), so taking one never jumps the
        # queue.
        with self._lock:
            if self._in_use < self._max_concurrent:
                self._in_use += 1
                return None
            if wait <= 0.0:
                self._rejected += 1
                raise self._error(wait, by_deadline)
            waiter: Waiter[None] = Waiter(loop)
            self._waiters.append(waiter)
            return waiter

    def _give_up(self, waiter: Waiter[None], count: bool) -> bool:
        # The waiter stops waiting; true if it was granted a slot meanwhile.
        with self._lock:
            if waiter.granted:
                return True
            if waiter.abandoned:
                return False
            self._waiters.remove(waiter)
            if count:
                self._rejected += 1
            return False

    def try_acquire(self) -> bool:
        """`try_acquire` takes a slot if one is free now and reports whether
        it did; it never waits and counts nothing as rejected."""
        with self._lock:
            if self._in_use < self._max_concurrent:
                self._in_use += 1
                return True
            return False

    def _give_back(self, slot: None) -> None:
        self.release()

    def release(self) -> None:
        """`release` frees a slot taken by `acquire`, `acquire_async` or
        `try_acquire`, handing it to the longest waiter if any."""
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.granted = True
            elif self._in_use == 0:
                raise RuntimeError(f"bulkhead {self._name!r} released too many times")
            else:
                self._in_use -= 1
                return
        if not waiter.wake():
            # A dead waiter's slot passes on instead of being lost.
            with self._lock:
                waiter.granted = False
                waiter.abandoned = True
            self.release()

    def __enter__(self) -> Bulkhead:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    async def __aenter__(self) -> Bulkhead:
        await self.acquire_async()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()

    def _end(self, held: None, exc: BaseException | None, /) -> None:
        self.release()

    def call(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`call` calls ``function(*args, **kwargs)`` holding a slot; for a
        coroutine function it returns the awaitable."""
        return self(function)(*args, **kwargs)

    def __repr__(self) -> str:
        return (
            f"<Bulkhead {self._name!r} {self._in_use}/{self._max_concurrent} in use, "
            f"{len(self._waiters)} waiting>"
        )
