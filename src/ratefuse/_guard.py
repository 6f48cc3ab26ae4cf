"""Decorator and context-manager forms of the limiters.

Both forms are thin: they call the limiter's own verbs (``acquire``,
``acquire_async``, ``decide``) and add nothing to the decision.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., Any])
Before = Callable[[tuple[Any, ...], dict[str, Any]], None]
BeforeAsync = Callable[[tuple[Any, ...], dict[str, Any]], Awaitable[None]]


def guarded(function: F, before: Before, before_async: BeforeAsync) -> F:
    """`guarded` wraps ``function`` so that ``before`` (``before_async`` for
    a coroutine function) runs with its arguments before every call."""
    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            await before_async(args, kwargs)
            return await function(*args, **kwargs)

        return cast(F, async_wrapper)

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        before(args, kwargs)
        return function(*args, **kwargs)

    return cast(F, wrapper)


class Acquiring:
    """`Acquiring` takes units on entry: ``with`` blocks in ``acquire``,
    ``async with`` awaits ``acquire_async``. Units are not given back on
    exit: a rate limit counts starts, not durations."""

    __slots__ = ("_acquire", "_acquire_async")

    def __init__(
        self, acquire: Callable[[], None], acquire_async: Callable[[], Awaitable[None]]
    ) -> None:
        self._acquire = acquire
        self._acquire_async = acquire_async

    def __enter__(self) -> Acquiring:
        self._acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    async def __aenter__(self) -> Acquiring:
        await self._acquire_async()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None
