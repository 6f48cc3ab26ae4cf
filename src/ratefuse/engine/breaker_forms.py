"""The breaker's call forms, written once over its public steps.

Every breaker, local (:class:`ratefuse.CircuitBreaker`, either core) or
fleet-wide (:class:`ratefuse.redis.FleetBreaker` and its asyncio twin),
meets the `Breaker` protocol: `permit_or_error` (or `try_acquire`) hands
out a permit, the permit takes the call's outcome (`BreakerPermit`), and
`timed` with `now_ns` say whether and how a form times the call. The forms
here (the sync decorator `GuardedFunction`, `guard_async`, the one-use
block `GuardedBlock`, and `BreakerForms`, the mixin that adds ``@breaker``,
``decorate``, ``call`` and ``guard``) use nothing else.

A breaker may offer a faster sync decorator by overriding
`BreakerForms.guarded`: the compiled local core does (its GuardedFunction
is the compiled twin of the one here, with the same decisions and clock
reads).
"""

from __future__ import annotations

import functools
import inspect
import math
import types
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, cast, overload

from ratefuse.core.errors import CircuitOpenError
from ratefuse.engine.held_iteration import Done, relay, relay_async

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# The start of a call a form did not time (slow-call tracking was off);
# clock readings are >= 0.
UNTIMED = -1

ExcType = type[BaseException] | None
Traceback = types.TracebackType | None


class BreakerPermit(Protocol):
    """`BreakerPermit` lets one call go ahead; its outcome is reported once.

    ``duration`` is the call's duration in seconds, ``now`` its completion
    time in ns (None: read the clock if a step needs it).
    """

    def on_success(self, duration: float, now: int | None = None) -> None: ...

    def on_error(
        self, duration: float, exc: BaseException, now: int | None = None
    ) -> None: ...

    def on_result(
        self, duration: float, result: object, now: int | None = None
    ) -> None: ...

    def release(self, now: int | None = None) -> None: ...


class Breaker(Protocol):
    """`Breaker` is what the forms ask of a breaker: its `name` and
    `fallback`, whether calls are `timed`, its clock (`now_ns`), and
    `permit_or_error`: a permit, or the CircuitOpenError of the rejection,
    dated by the same clock reading (awaitable on an asyncio breaker)."""

    @property
    def name(self) -> str: ...

    @property
    def fallback(self) -> Callable[..., Any] | None: ...

    @property
    def timed(self) -> bool: ...

    def now_ns(self) -> int: ...

    def permit_or_error(
        self, now: int | None = None
    ) -> (
        BreakerPermit | CircuitOpenError | Awaitable[BreakerPermit | CircuitOpenError]
    ): ...


def elapsed_seconds(elapsed_ns: int) -> float:
    """`elapsed_seconds` is ``elapsed_ns`` in seconds, rounded up by one ulp
    where needed so that a permit's ``duration_to_ns`` (which truncates)
    gets ``elapsed_ns`` back exactly: a call one ns over the slow-call
    threshold stays slow."""
    seconds = elapsed_ns / 1e9
    if int(seconds * 1e9) < elapsed_ns:
        seconds = math.nextafter(seconds, math.inf)
    return seconds


def start(breaker: Breaker, permit: BreakerPermit) -> int:
    """`start` is the start time of the call ``permit`` lets go ahead, read
    only if durations matter; UNTIMED otherwise. If the clock raises, the
    permit is released (a half-open probe must not leak) and the error
    propagates."""
    if not breaker.timed:
        return UNTIMED
    try:
        return breaker.now_ns()
    except BaseException:
        permit.release()
        raise


def finish(
    breaker: Breaker, permit: BreakerPermit, start_ns: int
) -> tuple[float, int | None]:
    """`finish` is (duration in seconds, end time or None) of the call of
    ``permit`` that started at ``start_ns`` (from `start`). A call started
    before slow-call tracking was switched on has no duration: it is
    recorded as not slow. If the clock raises, the permit is released and
    the error propagates."""
    if start_ns == UNTIMED or not breaker.timed:
        return 0.0, None
    try:
        now = breaker.now_ns()
    except BaseException:
        permit.release()
        raise
    return elapsed_seconds(max(now - start_ns, 0)), now


def record_exception(
    breaker: Breaker, permit: BreakerPermit, start_ns: int, exc: BaseException
) -> None:
    """`record_exception` reports a call that raised ``exc`` on ``permit``."""
    duration, now = finish(breaker, permit, start_ns)
    permit.on_error(duration, exc, now)


def record_result(
    breaker: Breaker, permit: BreakerPermit, start_ns: int, result: object
) -> None:
    """`record_result` reports a call that returned ``result`` on ``permit``."""
    duration, now = finish(breaker, permit, start_ns)
    permit.on_result(duration, result, now)


class GuardedFunction(Generic[P, R]):
    """`GuardedFunction` calls ``function`` through ``breaker``: rejected
    calls return ``fallback(*args, **kwargs)`` if a fallback is given, else
    raise CircuitOpenError; permitted ones are timed if the breaker is
    `timed` and their outcome recorded. Binds like a function when used as
    a method; `BreakerForms.guarded` also copies the function's name and
    doc onto it. Thread-safe if the breaker is. The compiled local core's
    GuardedFunction is its twin.
    """

    def __init__(
        self,
        breaker: Breaker,
        function: Callable[P, R],
        fallback: Callable[P, R] | None = None,
    ) -> None:
        self._breaker = breaker
        self._function = function
        self._fallback = fallback

    @property
    def breaker(self) -> Breaker:
        """`breaker` is the breaker guarding the function."""
        return self._breaker

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        breaker = self._breaker
        # A sync breaker's answer (an asyncio one is no GuardedFunction's).
        permit = cast(BreakerPermit | CircuitOpenError, breaker.permit_or_error())
        if isinstance(permit, CircuitOpenError):
            if self._fallback is not None:
                return self._fallback(*args, **kwargs)
            raise permit
        start_ns = start(breaker, permit)
        try:
            result = self._function(*args, **kwargs)
        except BaseException as exc:
            record_exception(breaker, permit, start_ns, exc)
            raise
        record_result(breaker, permit, start_ns, result)
        return result

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)

    def __reduce__(self) -> str:
        # Pickled by reference, like the function it replaces (guarded()
        # copied that function's name onto it).
        qualname: str = self.__qualname__  # type: ignore[attr-defined]
        return qualname

    def __repr__(self) -> str:
        return f"<GuardedFunction {self._function!r} by {self._breaker.name!r}>"


def guarded_function(
    breaker: Breaker,
    function: Callable[P, R],
    fallback: Callable[P, R] | None = None,
    *,
    wraps: bool = True,
) -> GuardedFunction[P, R]:
    """`guarded_function` is the `GuardedFunction` of ``function`` through
    ``breaker``; ``fallback`` None means the breaker's, ``wraps`` copies the
    function's name and doc onto it."""
    chosen = breaker.fallback if fallback is None else fallback
    guarded = GuardedFunction(breaker, function, chosen)
    if wraps:
        functools.update_wrapper(guarded, function)
    return guarded


async def _permit_or_error(breaker: Breaker) -> BreakerPermit | CircuitOpenError:
    # The answer of a sync or an asyncio breaker.
    answer = breaker.permit_or_error()
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


def guard_async(
    breaker: Breaker,
    function: Callable[P, Coroutine[Any, Any, T]],
    fallback: Callable[P, Any] | None = None,
) -> Callable[P, Coroutine[Any, Any, T]]:
    """`guard_async` wraps a coroutine function so that every call goes
    through ``breaker`` (sync or asyncio), like `GuardedFunction`: a
    rejected call returns ``fallback(*args, **kwargs)`` (awaited if
    awaitable) if given, else raises CircuitOpenError. The permit is asked
    for when the call is awaited; cancellation records nothing and frees a
    half-open probe."""

    @functools.wraps(function)
    async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
        permit = await _permit_or_error(breaker)
        if isinstance(permit, CircuitOpenError):
            if fallback is None:
                raise permit
            result = fallback(*args, **kwargs)
            if inspect.isawaitable(result):
                result = await result
            return cast(T, result)
        start_ns = start(breaker, permit)
        try:
            result = await function(*args, **kwargs)
        except BaseException as exc:
            record_exception(breaker, permit, start_ns, exc)
            raise
        record_result(breaker, permit, start_ns, result)
        return result

    guarded.breaker = breaker  # type: ignore[attr-defined]
    return guarded


def _done(breaker: Breaker, permit: BreakerPermit, start_ns: int) -> Done:
    # Reports the end of an iteration on ``permit``: exhaustion or an early
    # close is a success, an exception is classified.
    def done(exc: BaseException | None) -> None:
        if exc is None:
            duration, now = finish(breaker, permit, start_ns)
            permit.on_success(duration, now)
        else:
            record_exception(breaker, permit, start_ns, exc)

    return done


def _ignore_end(exc: BaseException | None) -> None:
    # A fallback's iteration reports to nobody.
    pass


def guard_generator(
    breaker: Breaker,
    function: Callable[P, Iterator[T]],
    fallback: Callable[P, Iterable[T]] | None = None,
) -> Callable[P, Iterator[T]]:
    """`guard_generator` wraps a sync generator function so that each
    generator holds a permit of ``breaker`` (sync only) from its first
    ``next()`` until it ends: exhausted or closed early is a success, an
    exception is classified by the breaker's rules. A rejected call raises
    CircuitOpenError at the first ``next()``, or iterates
    ``fallback(*args, **kwargs)`` if given."""

    @functools.wraps(function)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        def hold() -> tuple[Iterable[T], Done]:
            permit = cast(BreakerPermit | CircuitOpenError, breaker.permit_or_error())
            if isinstance(permit, CircuitOpenError):
                if fallback is None:
                    raise permit
                return fallback(*args, **kwargs), _ignore_end
            start_ns = start(breaker, permit)
            try:
                inner = function(*args, **kwargs)
            except BaseException as exc:
                record_exception(breaker, permit, start_ns, exc)
                raise
            return inner, _done(breaker, permit, start_ns)

        return relay(hold)

    guarded.breaker = breaker  # type: ignore[attr-defined]
    return guarded


def guard_async_generator(
    breaker: Breaker,
    function: Callable[P, AsyncIterator[T]],
    fallback: Callable[P, AsyncIterator[T]] | None = None,
) -> Callable[P, AsyncIterator[T]]:
    """`guard_async_generator` is `guard_generator` for async generator
    functions and any breaker (sync or asyncio); ``fallback`` returns an
    async iterator."""

    @functools.wraps(function)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> AsyncIterator[T]:
        async def hold() -> tuple[AsyncIterator[T], Done]:
            permit = await _permit_or_error(breaker)
            if isinstance(permit, CircuitOpenError):
                if fallback is None:
                    raise permit
                return fallback(*args, **kwargs), _ignore_end
            start_ns = start(breaker, permit)
            try:
                inner = function(*args, **kwargs)
            except BaseException as exc:
                record_exception(breaker, permit, start_ns, exc)
                raise
            return inner, _done(breaker, permit, start_ns)

        return relay_async(hold)

    guarded.breaker = breaker  # type: ignore[attr-defined]
    return guarded


def guard_any(
    breaker: Breaker, function: Callable[..., Any], fallback: Callable[..., Any] | None
) -> Callable[..., Any] | None:
    """`guard_any` is the form for a generator, async generator or
    coroutine function, or None for a plain sync function."""
    if inspect.isasyncgenfunction(function):
        return guard_async_generator(breaker, function, fallback)
    if inspect.isgeneratorfunction(function):
        return guard_generator(breaker, function, fallback)
    if inspect.iscoroutinefunction(function):
        return guard_async(breaker, function, fallback)
    return None


class GuardedBlock:
    """`GuardedBlock` runs one block through a breaker, as ``with`` (sync
    breakers) or ``async with`` (any): entering asks for a permit (raising
    CircuitOpenError if rejected), leaving records the block's outcome (an
    exception is classified by the breaker's rules and propagates). One use
    only; get a new one from the breaker's ``guard()`` for every block. Not
    shared between threads or tasks.
    """

    __slots__ = ("_breaker", "_permit", "_start_ns")

    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker
        self._permit: BreakerPermit | None = None
        self._start_ns = UNTIMED

    def _enter(self, permit: BreakerPermit | CircuitOpenError) -> GuardedBlock:
        if isinstance(permit, CircuitOpenError):
            raise permit
        self._permit = permit
        self._start_ns = start(self._breaker, permit)
        return self

    def _check_unused(self) -> None:
        if self._permit is not None:
            raise RuntimeError("a GuardedBlock can be entered only once")

    def __enter__(self) -> GuardedBlock:
        self._check_unused()
        answer = self._breaker.permit_or_error()
        if inspect.isawaitable(answer):
            getattr(answer, "close", lambda: None)()
            raise TypeError(f"{self._breaker!r} guards blocks with async with only")
        return self._enter(answer)

    def __exit__(self, kind: ExcType, exc: BaseException | None, tb: Traceback) -> None:
        permit = self._permit
        assert permit is not None
        if exc is None:
            duration, now = finish(self._breaker, permit, self._start_ns)
            permit.on_success(duration, now)
        else:
            record_exception(self._breaker, permit, self._start_ns, exc)

    async def __aenter__(self) -> GuardedBlock:
        self._check_unused()
        return self._enter(await _permit_or_error(self._breaker))

    async def __aexit__(
        self, kind: ExcType, exc: BaseException | None, tb: Traceback
    ) -> None:
        self.__exit__(kind, exc, tb)


class BreakerForms:
    """`BreakerForms` gives a breaker with the `Breaker` steps its forms:
    ``@breaker`` and `decorate` (sync and coroutine functions), `call` and
    `guard` (a mixin; it holds no state)."""

    __slots__ = ()

    def guarded(
        self,
        function: Callable[P, R],
        fallback: Callable[P, R] | None = None,
        *,
        wraps: bool = True,
    ) -> Callable[P, R]:
        """`guarded` wraps a sync ``function`` so that every call goes
        through the breaker; ``fallback`` None means the breaker's.
        ``wraps`` False skips copying the function's name and doc (for a
        wrapper used once)."""
        return guarded_function(cast(Breaker, self), function, fallback, wraps=wraps)

    def __call__(self, function: Callable[P, R]) -> Callable[P, R]:
        """`__call__` makes the breaker a decorator: see `decorate`."""
        return self.decorate(function)

    @overload
    def decorate(
        self, function: Callable[P, R], *, fallback: Callable[..., Any] | None = None
    ) -> Callable[P, R]: ...

    @overload
    def decorate(
        self, function: None = None, *, fallback: Callable[..., Any] | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def decorate(
        self,
        function: Callable[P, R] | None = None,
        *,
        fallback: Callable[..., Any] | None = None,
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """`decorate` wraps ``function`` (sync or async) so that every call
        goes through the breaker; ``fallback`` None means the breaker's.
        Without ``function`` it returns the decorator."""
        if function is None:
            return functools.partial(self.decorate, fallback=fallback)
        breaker = cast(Breaker, self)
        chosen = breaker.fallback if fallback is None else fallback
        form = guard_any(breaker, function, chosen)
        if form is not None:
            return cast(Callable[P, R], form)
        return self.guarded(function, fallback)

    def call(self, function: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`call` calls ``function(*args, **kwargs)`` through the breaker; for
        a coroutine function it returns the awaitable, for a generator
        function the generator (holding a permit while it is iterated)."""
        breaker = cast(Breaker, self)
        form = guard_any(breaker, function, breaker.fallback)
        if form is not None:
            return cast(R, form(*args, **kwargs))
        return self.guarded(function, wraps=False)(*args, **kwargs)

    def guard(self) -> GuardedBlock:
        """`guard` is a one-use context manager (sync or async) for a block."""
        return GuardedBlock(cast(Breaker, self))


class AsyncBreakerForms:
    """`AsyncBreakerForms` gives an asyncio breaker (whose `permit_or_error`
    is awaited) its forms: ``@breaker`` and `decorate` on coroutine
    functions, ``await breaker.call(...)`` and ``async with
    breaker.guard()`` (a mixin; it holds no state)."""

    __slots__ = ()

    def __call__(
        self, function: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """`__call__` makes the breaker a decorator: see `decorate`."""
        return self.decorate(function)

    def decorate(
        self,
        function: Callable[P, Coroutine[Any, Any, T]],
        *,
        fallback: Callable[..., Any] | None = None,
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """`decorate` wraps a coroutine function as `guard_async` does;
        ``fallback`` None means the breaker's. TypeError for a function
        that is not a coroutine function."""
        breaker = cast(Breaker, self)
        chosen = breaker.fallback if fallback is None else fallback
        if inspect.isasyncgenfunction(function):
            return cast(
                Callable[P, Coroutine[Any, Any, T]],
                guard_async_generator(breaker, function, chosen),
            )
        if not inspect.iscoroutinefunction(function):
            raise TypeError(
                f"{type(self).__name__} guards coroutine functions, got {function!r}"
            )
        return guard_async(breaker, function, chosen)

    async def call(
        self,
        function: Callable[P, Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`call` awaits ``function(*args, **kwargs)`` through the breaker."""
        return await self.decorate(function)(*args, **kwargs)

    def guard(self) -> GuardedBlock:
        """`guard` is a one-use ``async with`` context manager for a block."""
        return GuardedBlock(cast(Breaker, self))
