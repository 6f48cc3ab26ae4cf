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
import functools
import inspect
import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from typing import Any, Final, ParamSpec, TypeVar, cast

from ratefuse.core.errors import BulkheadFullError, DeadlineExceeded, RatefuseError
from ratefuse.engine.deadline import bounded, current
from ratefuse.engine.held_iteration import Done, relay, relay_async

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

DEFAULT_MAX_WAIT: Final = 0.0

__all__ = ["DEFAULT_MAX_WAIT", "Bulkhead", "BulkheadFullError"]


class _Waiter:
    # One queued caller: a thread blocked on `lock`, or a task awaiting
    # `future` on `loop`. `granted` is set under the bulkhead's lock by the
    # releaser that hands it a slot, so a waiter that times out at the same
    # moment can tell that the slot is already its own.
    # `abandoned` is set when its slot was passed on because its loop closed.
    __slots__ = ("abandoned", "future", "granted", "lock", "loop")

    def __init__(
        self,
        lock: threading.Lock | None,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[None] | None,
    ) -> None:
        self.granted = False
        self.abandoned = False
        self.lock = lock
        self.loop = loop
        self.future = future

    def wake(self) -> bool:
        # False if the waiter can no longer take the slot: its event loop
        # was closed with the task still waiting.
        if self.lock is not None:
            self.lock.release()
        elif self.loop is not None and self.future is not None:
            try:
                self.loop.call_soon_threadsafe(_resolve, self.future)
            except RuntimeError:
                return False
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead:
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
        self._max_wait = _check_wait("max_wait", max_wait)
        self._name = str(name)
        self._lock = threading.Lock()
        self._in_use = 0
        self._rejected = 0
        self._waiters: deque[_Waiter] = deque()

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

    @staticmethod
    def _bounded(wait: float) -> tuple[float, bool]:
        # (the wait for a slot within the running call's deadline, whether
        # the deadline cut it); asked only when a deadline is set.
        bound, by_deadline = bounded(wait)
        return (wait if bound is None else bound), by_deadline

    def _enter_or_queue(
        self,
        wait: float,
        by_deadline: bool,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> _Waiter | None:
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
            if loop is None:
                lock = threading.Lock()
                lock.acquire()
                waiter = _Waiter(lock, None, None)
            else:
                waiter = _Waiter(None, loop, loop.create_future())
            self._waiters.append(waiter)
            return waiter

    def _give_up(self, waiter: _Waiter, count: bool) -> bool:
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

    def acquire(self, timeout: float | None = None) -> None:
        """`acquire` takes a slot, waiting up to ``timeout`` seconds (None:
        ``max_wait``) and no longer than the running call's deadline
        allows; raises BulkheadFullError if none frees up in time, or
        DeadlineExceeded if the deadline ended the wait (at once when no
        time is left). Pair it with `release`."""
        wait = self._max_wait if timeout is None else _check_wait("timeout", timeout)
        by_deadline = False
        if current() is not None:  # else the check is this one ContextVar read
            wait, by_deadline = self._bounded(wait)
        waiter = self._enter_or_queue(wait, by_deadline)
        if waiter is None:
            return
        assert waiter.lock is not None
        blocking = -1 if wait >= threading.TIMEOUT_MAX else wait
        try:
            acquired = waiter.lock.acquire(timeout=blocking)
        except BaseException:
            # Interrupted (an exception from a signal handler): leave the
            # queue, or a later release would hand its slot to this ghost;
            # a slot granted meanwhile goes to the next waiter.
            if self._give_up(waiter, count=False):
                self.release()
            raise
        if acquired:
            return
        if not self._give_up(waiter, count=True):
            raise self._error(wait, by_deadline)

    async def acquire_async(self, timeout: float | None = None) -> None:
        """`acquire_async` is `acquire` for asyncio tasks: it waits without
        blocking the event loop. Cancelled while waiting, it takes no slot."""
        wait = self._max_wait if timeout is None else _check_wait("timeout", timeout)
        by_deadline = False
        if current() is not None:  # else the check is this one ContextVar read
            wait, by_deadline = self._bounded(wait)
        waiter = self._enter_or_queue(wait, by_deadline, asyncio.get_running_loop())
        if waiter is None:
            return
        assert waiter.future is not None
        try:
            if math.isinf(wait):
                await waiter.future
            else:
                await asyncio.wait_for(waiter.future, wait)
        except asyncio.TimeoutError:
            if not self._give_up(waiter, count=True):
                raise self._error(wait, by_deadline) from None
        except BaseException:
            # Cancelled: a slot granted meanwhile goes to the next waiter.
            if self._give_up(waiter, count=False):
                self.release()
            raise

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

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """`__call__` makes the bulkhead a decorator for sync and async
        functions: each call holds a slot while it runs. A generator or
        async generator holds its slot from its first ``next()`` until it
        is exhausted, raises or is closed."""
        if inspect.isasyncgenfunction(function):
            return cast(Callable[P, R], self._decorate_async_generator(function))
        if inspect.isgeneratorfunction(function):
            return cast(Callable[P, R], self._decorate_generator(function))
        if inspect.iscoroutinefunction(function):
            return cast(Callable[P, R], self._decorate_async(function))

        @functools.wraps(function)
        def bounded(*args: P.args, **kwargs: P.kwargs) -> R:
            self.acquire()
            try:
                return function(*args, **kwargs)
            finally:
                self.release()

        return bounded

    def _decorate_async(
        self, function: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(function)
        async def bounded(*args: P.args, **kwargs: P.kwargs) -> T:
            await self.acquire_async()
            try:
                return await function(*args, **kwargs)
            finally:
                self.release()

        return bounded

    def _release_at_end(self, exc: BaseException | None) -> None:
        self.release()

    def _decorate_generator(
        self, function: Callable[P, Iterator[T]]
    ) -> Callable[P, Iterator[T]]:
        def hold(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[Iterable[T], Done]:
            self.acquire()
            try:
                return function(*args, **kwargs), self._release_at_end
            except BaseException:
                self.release()
                raise

        @functools.wraps(function)
        def bounded(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
            return relay(lambda: hold(args, kwargs))

        return bounded

    def _decorate_async_generator(
        self, function: Callable[P, AsyncIterator[T]]
    ) -> Callable[P, AsyncIterator[T]]:
        async def hold(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[AsyncIterator[T], Done]:
            await self.acquire_async()
            try:
                return function(*args, **kwargs), self._release_at_end
            except BaseException:
                self.release()
                raise

        @functools.wraps(function)
        def bounded(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
            return relay_async(lambda: hold(args, kwargs))

        return bounded

    def call(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`call` calls ``function(*args, **kwargs)`` holding a slot; for a
        coroutine function it returns the awaitable."""
        return self(function)(*args, **kwargs)

    def __repr__(self) -> str:
        return (
            f"<Bulkhead {self._name!r} {self._in_use}/{self._max_concurrent} in use, "
            f"{len(self._waiters)} waiting>"
        )


def _check_wait(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} must be seconds as a float, got {value!r}")
    if not value >= 0.0:
        raise ValueError(f"{field} must be >= 0 seconds (inf: forever), got {value}")
    return float(value)
