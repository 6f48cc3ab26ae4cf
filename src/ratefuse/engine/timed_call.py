"""The time limiter: a guarded call with a ``timeout``.

asyncio: the call runs as a task of its own (with a copy of the caller's
context) and is cancelled at the timeout, as ``asyncio.wait_for`` does; the
caller gets :class:`~ratefuse.core.errors.CallTimeout` once the task has
finished cancelling.

Sync: Python cannot stop a thread, so the call runs in a worker thread of a
bounded `CallExecutor` (with a copy of the caller's context) and the
caller waits for it at most ``timeout`` seconds. At the timeout the caller
gets CallTimeout and the call is abandoned, not stopped: it runs on in its
worker until it returns, and its result or exception is dropped. Each
abandoned call keeps its worker busy, so the executor's ``max_workers``
bounds how many calls (running and abandoned) there can be at once; a call
that finds every worker busy is refused at once with BulkheadFullError,
before it runs, and records nothing on the breaker.

Either way, the running call's deadline (`ratefuse.engine.deadline`)
shortens the timeout, a deadline already spent refuses the call with
DeadlineExceeded before it takes a permit, and a timeout is recorded on the
permit with a duration of at least ``timeout`` (so it is slow whenever the
breaker's ``slow_call_duration`` is below the timeout): as the CallTimeout
exception (classified by the breaker's exception rules, by default a
failure) if ``timeout_is_failure``, else as a success.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Final, ParamSpec, TypeVar, cast

from ratefuse.core.errors import (
    BulkheadFullError,
    CallTimeout,
    CircuitOpenError,
    DeadlineExceeded,
)
from ratefuse.engine.breaker_steps import (
    Breaker,
    BreakerCall,
    BreakerPermit,
    finish,
    permit_or_error_async,
    record_exception,
    record_result,
    rejected,
    rejected_async,
    start,
)
from ratefuse.engine.deadline import bounded, check_seconds

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# The default executor's workers: calls that may run (or run on abandoned)
# at once through every timed sync form that was given no executor.
DEFAULT_MAX_WORKERS: Final = 32


class CallExecutor:
    """`CallExecutor` runs timed sync calls in at most ``max_workers`` (>= 1)
    threads, one call per thread: a call submitted while every worker is
    busy (running a call, or an abandoned one that has not returned yet) is
    refused with BulkheadFullError named ``name``, never queued. Thread-safe.
    """

    def __init__(
        self, max_workers: int = DEFAULT_MAX_WORKERS, *, name: str = "call-executor"
    ) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int):
            raise ValueError(f"max_workers must be an int, got {max_workers!r}")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self._max_workers = max_workers
        self._name = str(name)
        self._slots = threading.BoundedSemaphore(max_workers)
        self._lock = threading.Lock()
        self._busy = 0
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix=self._name)

    @property
    def max_workers(self) -> int:
        """`max_workers` is the number of calls that can run at once."""
        return self._max_workers

    @property
    def busy(self) -> int:
        """`busy` is the number of calls running now, abandoned or not."""
        return self._busy

    def submit(self, function: Callable[..., R], args: Any, kwargs: Any) -> Future[R]:
        """`submit` starts ``function(*args, **kwargs)`` in a worker, in a copy
        of the caller's context; BulkheadFullError if every worker is busy."""
        if not self._slots.acquire(blocking=False):
            raise BulkheadFullError(self._name, self._max_workers, 0.0)
        with self._lock:
            self._busy += 1
        context = contextvars.copy_context()
        try:
            future = self._pool.submit(context.run, function, *args, **kwargs)
        except BaseException:
            self._free(None)
            raise
        future.add_done_callback(self._free)
        return future

    def _free(self, future: Future[Any] | None) -> None:
        with self._lock:
            self._busy -= 1
        self._slots.release()

    def shutdown(self, wait: bool = True) -> None:
        """`shutdown` stops the workers once their calls return (waiting
        for them if ``wait``); later calls fail."""
        self._pool.shutdown(wait)

    def __repr__(self) -> str:
        return f"<CallExecutor {self._name!r} {self._busy}/{self._max_workers} busy>"


_default: CallExecutor | None = None
_default_lock = threading.Lock()


def default_executor() -> CallExecutor:
    """`default_executor` is the process's shared `CallExecutor`, created
    on first use with `DEFAULT_MAX_WORKERS` workers."""
    global _default
    with _default_lock:
        if _default is None:
            _default = CallExecutor(name="ratefuse-timeout")
        return _default


def check_timeout(timeout: object) -> float:
    """`check_timeout` is ``timeout`` as float seconds (finite, > 0);
    ValueError naming the field otherwise."""
    seconds = check_seconds("timeout", timeout)
    if seconds == 0.0:
        raise ValueError("timeout must be > 0 seconds, got 0")
    return seconds


def time_left(timeout: float) -> float:
    """`time_left` is the call's time: ``timeout``, or less if the running
    call's deadline ends sooner; DeadlineExceeded if it has ended."""
    limit, by_deadline = bounded(timeout)
    assert limit is not None
    if by_deadline and limit <= 0.0:
        raise DeadlineExceeded("call", None, 0.0)
    return limit


def record_timeout(
    breaker: Breaker,
    permit: BreakerPermit,
    start_ns: int,
    error: CallTimeout,
    as_failure: bool,
) -> None:
    """`record_timeout` reports a call that timed out with ``error``: with
    a duration of at least its timeout, as ``error`` if ``as_failure``,
    else as a success."""
    duration, now = finish(breaker, permit, start_ns)
    duration = max(duration, error.timeout)
    if as_failure:
        permit.on_error(duration, error, now)
    else:
        permit.on_success(duration, now)


class TimedFunction(BreakerCall[P, R]):
    """`TimedFunction` calls a sync ``function`` through ``breaker`` in a
    worker of ``executor`` (None: `default_executor`), waiting at most
    ``timeout`` seconds (see the module); otherwise as GuardedFunction:
    a rejected call returns ``fallback(*args, **kwargs)`` if given, else
    raises CircuitOpenError. Binds like a function when used as a method.
    """

    def __init__(
        self,
        breaker: Breaker,
        function: Callable[P, R],
        fallback: Callable[P, R] | None,
        timeout: float,
        timeout_is_failure: bool = True,
        executor: CallExecutor | None = None,
    ) -> None:
        super().__init__(breaker, function, fallback)
        self._timeout = check_timeout(timeout)
        self._as_failure = bool(timeout_is_failure)
        self._executor = executor
        functools.update_wrapper(self, function)

    @property
    def timeout(self) -> float:
        """`timeout` is the seconds a call may take."""
        return self._timeout

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        limit = time_left(self._timeout)
        breaker = self._breaker
        permit = cast(BreakerPermit | CircuitOpenError, breaker.permit_or_error())
        if isinstance(permit, CircuitOpenError):
            return cast(R, rejected(permit, self._fallback, args, kwargs))
        start_ns = start(breaker, permit)
        executor = self._executor or default_executor()
        try:
            future = executor.submit(self._function, args, kwargs)
        except BaseException:
            permit.release()  # refused before it ran: nothing to record
            raise
        try:
            result = future.result(limit)
        except FutureTimeout:
            if not future.done():  # else it finished at the last moment
                error = CallTimeout(breaker.name, limit)
                record_timeout(breaker, permit, start_ns, error, self._as_failure)
                raise error from None
            return self._finished(future, permit, start_ns)
        except BaseException as exc:
            record_exception(breaker, permit, start_ns, exc)
            raise
        record_result(breaker, permit, start_ns, result)
        return result

    def _finished(self, future: Future[R], permit: BreakerPermit, start_ns: int) -> R:
        # The outcome of a call that ended as its wait timed out.
        try:
            result = future.result(0)
        except BaseException as exc:
            record_exception(self._breaker, permit, start_ns, exc)
            raise
        record_result(self._breaker, permit, start_ns, result)
        return result

    def __repr__(self) -> str:
        return (
            f"<TimedFunction {self._function!r} by {self._breaker.name!r} "
            f"within {self._timeout:.6g}s>"
        )


async def _settle(task: asyncio.Future[Any]) -> None:
    # Waits for a cancelled task to end, and marks its outcome as seen.
    await asyncio.wait((task,))
    if not task.cancelled():
        task.exception()


def timed_async(
    breaker: Breaker,
    function: Callable[P, Coroutine[Any, Any, T]],
    fallback: Callable[P, Any] | None,
    timeout: float,
    timeout_is_failure: bool = True,
) -> Callable[P, Coroutine[Any, Any, T]]:
    """`timed_async` is `guard_async` with a ``timeout``: the call runs as
    its own task, cancelled at the timeout (see the module)."""
    seconds = check_timeout(timeout)
    as_failure = bool(timeout_is_failure)

    @functools.wraps(function)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        limit = time_left(seconds)
        permit = await permit_or_error_async(breaker)
        if isinstance(permit, CircuitOpenError):
            return cast(T, await rejected_async(permit, fallback, args, kwargs))
        start_ns = start(breaker, permit)
        try:
            task = asyncio.ensure_future(function(*args, **kwargs))
        except BaseException as exc:  # bad arguments: no coroutine to run
            record_exception(breaker, permit, start_ns, exc)
            raise
        try:
            done, _ = await asyncio.wait((task,), timeout=limit)
        except BaseException as exc:  # the caller was cancelled
            task.cancel()
            record_exception(breaker, permit, start_ns, exc)
            raise
        if not done:
            task.cancel()
            await _settle(task)
            error = CallTimeout(breaker.name, limit)
            record_timeout(breaker, permit, start_ns, error, as_failure)
            raise error
        try:
            result = task.result()
        except BaseException as exc:
            record_exception(breaker, permit, start_ns, exc)
            raise
        record_result(breaker, permit, start_ns, result)
        return result

    guarded.breaker = breaker  # type: ignore[attr-defined]
    return guarded
