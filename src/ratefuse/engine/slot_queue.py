"""`SlotQueue`: the FIFO queue of waiters and every form of a concurrency limit.

A concurrency limit (the `Bulkhead`, the `AdaptiveLimiter`) hands a freed
slot to its longest waiter, thread or task, so newcomers cannot starve it.
This is that queue's waiter, the bounded wait for a slot (``max_wait``, the
call's timeout and the running call's deadline), the give-up and give-back
on every way out of a wait, and the decorator forms (functions, coroutine
functions, generators and async generators), written once: a limit says
only how to take a slot or queue (`_enter_or_queue`), how a waiter gives up
(`_give_up`), what a slot it may not keep becomes (`_give_back`), how a
call that held one ends (`_end`) and what a caller that waited in vain gets
(`_error`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from typing import Any, Generic, ParamSpec, TypeVar, cast

from ratefuse.core.errors import RatefuseError
from ratefuse.engine.deadline import bounded, current
from ratefuse.engine.held_iteration import Done, relay, relay_async

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")
It = TypeVar("It")

__all__ = ["SlotQueue", "Waiter", "check_wait"]


class Waiter(Generic[S]):
    """`Waiter` is one queued caller: a thread blocked on `lock`, or a task
    awaiting `future` on `loop`.

    `granted` and `slot` (what the caller takes: None for a plain slot, a
    permit) are set under the limit's lock by the releaser that hands it a
    slot, so a waiter that times out at the same moment can tell that the
    slot is already its own. `abandoned` is set when its slot was passed on
    because its loop closed.
    """

    __slots__ = ("abandoned", "future", "granted", "lock", "loop", "slot")

    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.granted = False
        self.abandoned = False
        self.slot: S | None = None
        if loop is None:
            lock = threading.Lock()
            lock.acquire()
            self.lock: threading.Lock | None = lock
            self.loop: asyncio.AbstractEventLoop | None = None
            self.future: asyncio.Future[None] | None = None
        else:
            self.lock = None
            self.loop = loop
            self.future = loop.create_future()

    def wake(self) -> bool:
        """`wake` wakes the waiter; False if it can no longer take the
        slot: its event loop was closed with the task still waiting."""
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


def check_wait(field: str, value: float) -> float:
    """`check_wait` checks a wait in seconds (>= 0, inf: forever) and
    returns it as a float; ValueError naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} must be seconds as a float, got {value!r}")
    if not value >= 0.0:
        raise ValueError(f"{field} must be >= 0 seconds (inf: forever), got {value}")
    return float(value)


def _within_deadline(wait: float) -> tuple[float, bool]:
    # (the wait for a slot within the running call's deadline, whether the
    # deadline cut it); asked only when a deadline is set.
    bound, by_deadline = bounded(wait)
    return (wait if bound is None else bound), by_deadline


class SlotQueue(ABC, Generic[S]):
    """`SlotQueue` is the base of a concurrency limit whose callers wait in
    one FIFO queue: `acquire`, `acquire_async` and the decorator forms.

    ``S`` is what a caller takes and a decorated call holds (None for a
    plain slot, or a permit). A subclass sets ``_max_wait``.
    """

    __slots__ = ()

    _max_wait: float

    @abstractmethod
    def _enter_or_queue(
        self,
        wait: float,
        by_deadline: bool,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> S | Waiter[S]:
        """`_enter_or_queue` takes a free slot, queues a waiter (on
        ``loop`` for a task), or raises `_error` if it may not wait."""

    @abstractmethod
    def _give_up(self, waiter: Waiter[S], count: bool) -> bool:
        """`_give_up` takes ``waiter`` out of the queue (counted as
        rejected if ``count``); true if it was granted a slot meanwhile."""

    @abstractmethod
    def _give_back(self, slot: S) -> None:
        """`_give_back` returns a slot granted to a waiter interrupted or
        cancelled meanwhile (it goes to the next waiter)."""

    @abstractmethod
    def _error(self, wait: float, by_deadline: bool) -> RatefuseError:
        """`_error` is what a caller that waited ``wait`` seconds in vain
        gets: the deadline's error if the deadline cut its wait short."""

    @abstractmethod
    def _end(self, held: S, exc: BaseException | None, /) -> None:
        """`_end` ends a call that held ``held`` and ended with ``exc``
        (None: success)."""

    def acquire(self, timeout: float | None = None) -> S:
        """`acquire` takes a slot, waiting up to ``timeout`` seconds (None:
        ``max_wait``) and no longer than the running call's deadline
        allows; raises the limit's full error if none frees up in time, or
        DeadlineExceeded if the deadline ended the wait (at once when no
        time is left)."""
        wait = self._max_wait if timeout is None else check_wait("timeout", timeout)
        by_deadline = False
        if current() is not None:  # else the check is this one ContextVar read
            wait, by_deadline = _within_deadline(wait)
        taken = self._enter_or_queue(wait, by_deadline)
        if type(taken) is not Waiter:
            # Not typing.cast: a call on the path that finds a slot free.
            return taken  # type: ignore[return-value]
        waiter = cast(Waiter[S], taken)
        assert waiter.lock is not None
        blocking = -1 if wait >= threading.TIMEOUT_MAX else wait
        try:
            acquired = waiter.lock.acquire(timeout=blocking)
        except BaseException:
            # Interrupted (an exception from a signal handler): leave the
            # queue, or a later release would hand its slot to this ghost;
            # a slot granted meanwhile goes to the next waiter.
            if self._give_up(waiter, count=False):
                self._give_back(cast(S, waiter.slot))
            raise
        if not acquired and not self._give_up(waiter, count=True):
            raise self._error(wait, by_deadline)
        return cast(S, waiter.slot)

    async def acquire_async(self, timeout: float | None = None) -> S:
        """`acquire_async` is `acquire` for asyncio tasks: it waits without
        blocking the event loop. Cancelled while waiting, it takes no slot."""
        wait = self._max_wait if timeout is None else check_wait("timeout", timeout)
        by_deadline = False
        if current() is not None:  # else the check is this one ContextVar read
            wait, by_deadline = _within_deadline(wait)
        taken = self._enter_or_queue(wait, by_deadline, asyncio.get_running_loop())
        if type(taken) is not Waiter:
            # Not typing.cast: a call on the path that finds a slot free.
            return taken  # type: ignore[return-value]
        waiter = cast(Waiter[S], taken)
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
                self._give_back(cast(S, waiter.slot))
            raise
        return cast(S, waiter.slot)

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """`__call__` makes the limit a decorator for sync and async
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
        def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            # Not a with-block object: it would double a decorated call's cost.
            held = self.acquire()
            try:
                result = function(*args, **kwargs)
            except BaseException as exc:
                self._end(held, exc)
                raise
            self._end(held, None)
            return result

        return limited

    def _decorate_async(
        self, function: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(function)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            held = await self.acquire_async()
            try:
                result = await function(*args, **kwargs)
            except BaseException as exc:
                self._end(held, exc)
                raise
            self._end(held, None)
            return result

        return limited

    def _start(
        self,
        held: S,
        function: Callable[..., It],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[It, Done]:
        # Creates a decorated generator holding ``held``, and the `Done` its
        # relay reports the end to; a creation that raises ends the hold.
        try:
            return function(*args, **kwargs), lambda exc: self._end(held, exc)
        except BaseException as exc:
            self._end(held, exc)
            raise

    def _decorate_generator(
        self, function: Callable[P, Iterator[R]]
    ) -> Callable[P, Iterator[R]]:
        def hold(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[Iterable[R], Done]:
            return self._start(self.acquire(), function, args, kwargs)

        @functools.wraps(function)
        def limited(*args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
            return relay(lambda: hold(args, kwargs))

        return limited

    def _decorate_async_generator(
        self, function: Callable[P, AsyncIterator[R]]
    ) -> Callable[P, AsyncIterator[R]]:
        async def hold(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[AsyncIterator[R], Done]:
            return self._start(await self.acquire_async(), function, args, kwargs)

        @functools.wraps(function)
        def limited(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[R]:
            return relay_async(lambda: hold(args, kwargs))

        return limited
