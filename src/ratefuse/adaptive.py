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
import functools
import inspect
import math
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Final, ParamSpec, TypeVar, cast

from ratefuse.adaptive_stats import AdaptiveLimitFullError, AdaptiveStats
from ratefuse.core.adaptive.config import AIMD, AdaptiveAlgorithm, Gradient2, Vegas
from ratefuse.core.adaptive.limit import AdaptiveCore, AdaptivePermit
from ratefuse.core.errors import DeadlineExceeded
from ratefuse.engine.deadline import bounded, current
from ratefuse.engine.held_iteration import Done, relay, relay_async

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

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


class _Waiter:
    # One queued caller, as the Bulkhead's: a thread blocked on `lock` or a
    # task awaiting `future` on `loop`; `permit` is set under the limiter's
    # lock by the hand-off, so a waiter timing out then keeps it.
    __slots__ = ("future", "lock", "loop", "permit")

    def __init__(
        self,
        lock: threading.Lock | None,
        loop: asyncio.AbstractEventLoop | None,
        future: asyncio.Future[None] | None,
    ) -> None:
        self.permit: AdaptivePermit | None = None
        self.lock = lock
        self.loop = loop
        self.future = future

    def wake(self) -> bool:
        # False if its event loop is closed: the permit must go back.
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


class AdaptiveLimiter:
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
        if not isinstance(drop_on, tuple) or not all(
            isinstance(kind, type) and issubclass(kind, BaseException)
            for kind in drop_on
        ):
            raise TypeError(
                f"drop_on must be a tuple of exception types, got {drop_on!r}"
            )
        self._algorithm = chosen
        self._max_wait = _check_wait("max_wait", max_wait)
        self._name = str(name)
        self._drop_on = drop_on
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()
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
                waiter.permit = permit
            if not waiter.wake():
                # Its loop is closed: the slot goes on instead of being lost.
                with self._lock:
                    waiter.permit = None
                permit.ignore()

    def _enter_or_queue(
        self,
        wait: float,
        by_deadline: bool,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> AdaptivePermit | _Waiter:
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
            if loop is None:
                lock = threading.Lock()
                lock.acquire()
                waiter = _Waiter(lock, None, None)
            else:
                waiter = _Waiter(None, loop, loop.create_future())
            self._waiters.append(waiter)
            self._core.enqueue()
        # A slot freed before the enqueue notified nobody: offer it now.
        self._hand_off()
        return waiter

    def _give_up(self, waiter: _Waiter, count: bool) -> AdaptivePermit | None:
        # The waiter stops waiting; its permit if it was handed one.
        with self._lock:
            if waiter.permit is not None:
                return waiter.permit
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                self._core.dequeue()
            if count:
                self._rejected += 1
        # Newcomers were held back while it waited; a free slot is theirs now.
        self._hand_off()
        return None

    def _error(
        self, wait: float, by_deadline: bool
    ) -> AdaptiveLimitFullError | DeadlineExceeded:
        # What a caller that waited ``wait`` seconds in vain gets: the
        # deadline's error if the running call's deadline cut the wait.
        if by_deadline:
            return DeadlineExceeded("adaptive", None, wait)
        return AdaptiveLimitFullError(self._name, self._core.limit, wait)

    @staticmethod
    def _within_deadline(wait: float) -> tuple[float, bool]:
        # (the wait for a slot within the running call's deadline, whether
        # the deadline cut it): one ContextVar read when none is set.
        if current() is None:
            return wait, False
        bound, by_deadline = bounded(wait)
        return (wait if bound is None else bound), by_deadline

    def acquire(self, timeout: float | None = None) -> AdaptivePermit:
        """`acquire` gives a permit, waiting up to ``timeout`` seconds (None:
        ``max_wait``) for a slot; raises AdaptiveLimitFullError if none
        frees up in time."""
        wait = self._max_wait if timeout is None else _check_wait("timeout", timeout)
        wait, by_deadline = self._within_deadline(wait)
        taken = self._enter_or_queue(wait, by_deadline)
        if isinstance(taken, _Waiter):
            assert taken.lock is not None
            blocking = -1 if wait >= threading.TIMEOUT_MAX else wait
            try:
                taken.lock.acquire(timeout=blocking)
            except BaseException:
                permit = self._give_up(taken, count=False)
                if permit is not None:
                    permit.ignore()
                raise
            permit = self._give_up(taken, count=True)
            if permit is None:
                raise self._error(wait, by_deadline)
            return permit
        return taken

    async def acquire_async(self, timeout: float | None = None) -> AdaptivePermit:
        """`acquire_async` is `acquire` for asyncio tasks: it waits without
        blocking the event loop. Cancelled while waiting, it takes no slot."""
        wait = self._max_wait if timeout is None else _check_wait("timeout", timeout)
        wait, by_deadline = self._within_deadline(wait)
        taken = self._enter_or_queue(wait, by_deadline, asyncio.get_running_loop())
        if isinstance(taken, _Waiter):
            assert taken.future is not None
            try:
                if math.isinf(wait):
                    await taken.future
                else:
                    await asyncio.wait_for(taken.future, wait)
            except asyncio.TimeoutError:
                pass
            except BaseException:
                permit = self._give_up(taken, count=False)
                if permit is not None:
                    permit.ignore()
                raise
            permit = self._give_up(taken, count=True)
            if permit is None:
                raise self._error(wait, by_deadline) from None
            return permit
        return taken

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

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """`__call__` makes the limiter a decorator for sync and async
        functions, generators and async generators: each call holds a slot
        while it runs (a generator from its first ``next()`` to its end)."""
        if inspect.isasyncgenfunction(function):
            return cast(Callable[P, R], self._decorate_async_generator(function))
        if inspect.isgeneratorfunction(function):
            return cast(Callable[P, R], self._decorate_generator(function))
        if inspect.iscoroutinefunction(function):
            return cast(Callable[P, R], self._decorate_async(function))

        @functools.wraps(function)
        def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            permit = self.acquire()
            try:
                result = function(*args, **kwargs)
            except BaseException as exc:
                self.finish(permit, exc)
                raise
            permit.release()
            return result

        return limited

    def _decorate_async(
        self, function: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        @functools.wraps(function)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> T:
            permit = await self.acquire_async()
            try:
                result = await function(*args, **kwargs)
            except BaseException as exc:
                self.finish(permit, exc)
                raise
            permit.release()
            return result

        return limited

    def _done(self, permit: AdaptivePermit) -> Done:
        return lambda exc: self.finish(permit, exc)

    def _decorate_generator(
        self, function: Callable[P, Iterator[T]]
    ) -> Callable[P, Iterator[T]]:
        def hold(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[Iterable[T], Done]:
            permit = self.acquire()
            try:
                return function(*args, **kwargs), self._done(permit)
            except BaseException as exc:
                self.finish(permit, exc)
                raise

        @functools.wraps(function)
        def limited(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
            return relay(lambda: hold(args, kwargs))

        return limited

    def _decorate_async_generator(
        self, function: Callable[P, AsyncIterator[T]]
    ) -> Callable[P, AsyncIterator[T]]:
        async def hold(
            args: tuple[Any, ...], kwargs: dict[str, Any]
        ) -> tuple[AsyncIterator[T], Done]:
            permit = await self.acquire_async()
            try:
                return function(*args, **kwargs), self._done(permit)
            except BaseException as exc:
                self.finish(permit, exc)
                raise

        @functools.wraps(function)
        def limited(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
            return relay_async(lambda: hold(args, kwargs))

        return limited

    def __repr__(self) -> str:
        return (
            f"<AdaptiveLimiter {self._name!r} {type(self._algorithm).__name__} "
            f"{self._core.in_flight}/{self._core.limit} in use, "
            f"{self._core.waiting} waiting>"
        )


def _check_wait(field: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{field} must be seconds as a float, got {value!r}")
    if not value >= 0.0:
        raise ValueError(f"{field} must be >= 0 seconds (inf: forever), got {value}")
    return float(value)
