"""Decorator and context-manager forms of the limiters.

Both forms are thin: they call the limiter's own verbs (``acquire``,
``acquire_async``, ``decide``) and add nothing to the decision.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from ratefuse.core.errors import RateLimitExceeded
from ratefuse.core.keys import Key

if TYPE_CHECKING:
    from ratefuse.core.decision import Decision

F = TypeVar("F", bound=Callable[..., Any])
Before = Callable[[tuple[Any, ...], dict[str, Any]], None]
BeforeAsync = Callable[[tuple[Any, ...], dict[str, Any]], Awaitable[None]]
KeyOf = Callable[..., Key]


def guarded(function: F, before: Before, before_async: BeforeAsync) -> F:
    """`guarded` wraps ``function`` so that ``before`` (``before_async`` for
    a coroutine function) runs with its arguments before every call.

    A generator function (sync or async) is limited per iteration, not per
    call: ``before`` runs once, when iteration starts (the first ``next``
    or ``send``), so a generator created and never iterated takes nothing,
    and an async generator waits with ``before_async``, never blocking the
    event loop. The items are the generator's, unlimited.
    """
    if inspect.isasyncgenfunction(function):
        return cast(F, _guarded_async_generator(function, before_async))
    if inspect.isgeneratorfunction(function):

        @functools.wraps(function)
        def generator_wrapper(*args: Any, **kwargs: Any) -> Any:
            before(args, kwargs)
            return (yield from function(*args, **kwargs))

        return cast(F, generator_wrapper)
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


def _guarded_async_generator(
    function: Callable[..., AsyncGenerator[Any, Any]], before_async: BeforeAsync
) -> Callable[..., AsyncGenerator[Any, Any]]:
    """`_guarded_async_generator` is `guarded` for an async generator
    function: the wrapper is an async generator that awaits
    ``before_async`` when iteration starts, then delegates every
    ``asend``, ``athrow`` and ``aclose`` to the generator (async
    generators have no ``yield from``)."""

    @functools.wraps(function)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        await before_async(args, kwargs)
        inner = function(*args, **kwargs)
        try:
            sent: Any = None
            thrown: BaseException | None = None
            while True:
                try:
                    if thrown is None:
                        item = await inner.asend(sent)
                    else:
                        item, thrown = await inner.athrow(thrown), None
                except StopAsyncIteration:
                    return
                try:
                    sent = yield item
                except GeneratorExit:
                    raise  # the finally below closes the generator
                except BaseException as error:  # thrown in: hand it on
                    sent, thrown = None, error
        finally:
            await inner.aclose()

    return wrapper


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


class SubjectForms:
    """`SubjectForms` gives a one-subject limiter its decorator and context
    manager forms, built on its own ``acquire``, ``acquire_async`` and
    ``decide`` (a mixin: put it before the engine in the bases)."""

    if TYPE_CHECKING:

        def acquire(self, cost: int = 1, timeout: float | None = None) -> None: ...

        def acquire_async(
            self, cost: int = 1, timeout: float | None = None
        ) -> Awaitable[None]: ...

        def decide(self, cost: int = 1, now: int | None = None) -> Decision: ...

    def limit(
        self, cost: int = 1, *, wait: bool = True, timeout: float | None = None
    ) -> Callable[[F], F]:
        """`limit` decorates a function (sync or async) so every call first
        takes ``cost`` units: waiting up to ``timeout`` seconds if ``wait``,
        else raising RateLimitExceeded at once when denied. A generator
        function (sync or async) takes them once per iteration, when it
        starts (see `guarded`)."""

        def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if wait:
                self.acquire(cost, timeout)
            else:
                self.admit_or_raise(cost)

        async def before_async(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if wait:
                await self.acquire_async(cost, timeout)
            else:
                self.admit_or_raise(cost)

        return lambda function: guarded(function, before, before_async)

    def acquiring(self, cost: int = 1, timeout: float | None = None) -> Acquiring:
        """`acquiring` is a context manager (``with`` or ``async with``) that
        takes ``cost`` units on entry, waiting up to ``timeout`` seconds."""
        return Acquiring(
            lambda: self.acquire(cost, timeout),
            lambda: self.acquire_async(cost, timeout),
        )

    def admit_or_raise(self, cost: int = 1) -> None:
        """`admit_or_raise` takes ``cost`` units now or raises
        RateLimitExceeded with the decision."""
        decision = self.decide(cost)
        if not decision.allowed:
            raise RateLimitExceeded(decision)


class KeyedForms:
    """`KeyedForms` is `SubjectForms` for a keyed limiter: every form takes
    a key, or a function of the call's arguments that returns one."""

    if TYPE_CHECKING:

        def acquire(
            self, key: Key, cost: int = 1, timeout: float | None = None
        ) -> None: ...

        def acquire_async(
            self, key: Key, cost: int = 1, timeout: float | None = None
        ) -> Awaitable[None]: ...

        def decide(
            self, key: Key, cost: int = 1, now: int | None = None
        ) -> Decision: ...

    def limit(
        self,
        key: KeyOf | Key,
        cost: int = 1,
        *,
        wait: bool = True,
        timeout: float | None = None,
    ) -> Callable[[F], F]:
        """`limit` decorates a function (sync or async) so every call first
        takes ``cost`` units of the key ``key(*args, **kwargs)`` (or of the
        constant ``key``): waiting up to ``timeout`` seconds if ``wait``,
        else raising RateLimitExceeded at once when denied. A generator
        function (sync or async) takes them once per iteration, when it
        starts (see `guarded`)."""
        key_of: KeyOf = key if callable(key) else (lambda *args, **kwargs: key)

        def before(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            subject = key_of(*args, **kwargs)
            if wait:
                self.acquire(subject, cost, timeout)
            else:
                self.admit_or_raise(subject, cost)

        async def before_async(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            subject = key_of(*args, **kwargs)
            if wait:
                await self.acquire_async(subject, cost, timeout)
            else:
                self.admit_or_raise(subject, cost)

        return lambda function: guarded(function, before, before_async)

    def acquiring(
        self, key: Key, cost: int = 1, timeout: float | None = None
    ) -> Acquiring:
        """`acquiring` is a context manager (``with`` or ``async with``) that
        takes ``cost`` units of ``key`` on entry, waiting up to ``timeout``."""
        return Acquiring(
            lambda: self.acquire(key, cost, timeout),
            lambda: self.acquire_async(key, cost, timeout),
        )

    def admit_or_raise(self, key: Key, cost: int = 1) -> None:
        """`admit_or_raise` takes ``cost`` units of ``key`` now or raises
        RateLimitExceeded with the decision."""
        decision = self.decide(key, cost)
        if not decision.allowed:
            raise RateLimitExceeded(decision)
