"""`retry`: a small retry decorator for users without tenacity.

It waits what `ratefuse.retry.plan.next_wait` says (the same planner as
the tenacity strategies): an error's ``retry_after`` plus jitter, else the
backoff; it gives up at once when waiting cannot help (a DeadlineExceeded,
a ``retry_after`` of ``inf``, a wait that does not fit the running call's
deadline), when the attempts are spent, or when the `RetryBudget` (if
given) refuses; then the last error propagates.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from ratefuse.core.args import is_exception_types
from ratefuse.retry.budget import RetryBudget
from ratefuse.retry.plan import (
    DEFAULT_JITTER,
    RETRIABLE,
    Backoff,
    check_jitter,
    next_wait,
)

P = ParamSpec("P")
R = TypeVar("R")


class Retry:
    """`Retry` (also named `retry`) is a decorator (sync and coroutine
    functions) that makes up to ``attempts`` attempts while they raise one
    of ``retry_on`` (by default the retriable ratefuse errors,
    `plan.RETRIABLE`), waiting between them what the planner says (an
    error's retry_after times 1 + ``jitter`` * ``rng()``, else
    ``backoff``), within the running call's deadline and the ``budget``.
    ``sleep``/``async_sleep`` and ``rng`` are for tests. ValueError naming
    the field for a bad value. Calling it on a function decorates it."""

    def __init__(
        self,
        attempts: int = 3,
        *,
        retry_on: tuple[type[BaseException], ...] = RETRIABLE,
        backoff: Backoff | None = None,
        jitter: float = DEFAULT_JITTER,
        budget: RetryBudget | None = None,
        sleep: Callable[[float], object] | None = None,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
        rng: Callable[[], float] | None = None,
    ) -> None:
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise ValueError(f"attempts must be an int, got {attempts!r}")
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        if not is_exception_types(retry_on):
            raise ValueError(
                f"retry_on must be a tuple of exception types, got {retry_on!r}"
            )
        self.attempts = attempts
        self.retry_on = retry_on
        self.backoff = Backoff() if backoff is None else backoff
        self.jitter = check_jitter(jitter)
        self.budget = budget
        self._sleep = time.sleep if sleep is None else sleep
        self._async_sleep = asyncio.sleep if async_sleep is None else async_sleep
        self._rng = random.random if rng is None else rng

    def wait_after(self, error: BaseException, attempt: int) -> float | None:
        """`wait_after` is the seconds to wait after failed attempt number
        ``attempt`` raised ``error``, or None to give up (and re-raise)."""
        if not isinstance(error, self.retry_on) or attempt >= self.attempts:
            return None
        wait = next_wait(error, self.backoff(attempt), self.jitter, self._rng)
        if wait is None:
            return None
        if self.budget is not None and not self.budget.try_retry():
            return None
        return wait

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(function):
            return cast(Callable[P, R], self._decorate_async(function))

        @functools.wraps(function)
        def retried(*args: P.args, **kwargs: P.kwargs) -> R:
            if self.budget is not None:
                self.budget.record_call()
            attempt = 1
            while True:
                try:
                    return function(*args, **kwargs)
                except Exception as error:
                    wait = self.wait_after(error, attempt)
                    if wait is None:
                        raise
                self._sleep(wait)
                attempt += 1

        return retried

    def _decorate_async(
        self, function: Callable[P, Coroutine[Any, Any, R]]
    ) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(function)
        async def retried(*args: P.args, **kwargs: P.kwargs) -> R:
            if self.budget is not None:
                self.budget.record_call()
            attempt = 1
            while True:
                try:
                    return await function(*args, **kwargs)
                except Exception as error:
                    wait = self.wait_after(error, attempt)
                    if wait is None:
                        raise
                await self._async_sleep(wait)
                attempt += 1

        return retried

    def __repr__(self) -> str:
        return f"<Retry attempts={self.attempts} on {len(self.retry_on)} errors>"


# `retry` is the decorator's name for users: ``@retry(3)`` makes a Retry.
retry = Retry
