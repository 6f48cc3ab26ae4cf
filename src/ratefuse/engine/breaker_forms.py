"""The breaker's call forms, written once over its public steps.

Every breaker, local (:class:`ratefuse.CircuitBreaker`, either core) or
fleet-wide (:class:`ratefuse.redis.FleetBreaker` and its asyncio twin),
meets the `Breaker` protocol: `permit_or_error` (or `try_acquire`) hands
out a permit, the permit takes the call's outcome (`BreakerPermit`), and
`timed` with `now_ns` say whether and how a form times the call. The forms
here (the sync decorator `GuardedFunction`, `guard_async`, the one-use
block `GuardedBlock`, and `BreakerForms`, the mixin that adds ``@breaker``,
``decorate``, ``call`` and ``guard``) use nothing else; those steps live
in `ratefuse.engine.breaker_steps`. With ``timeout=``, `decorate` and
`BreakerForms.call_with_timeout` build the time limiter's forms
(`ratefuse.engine.timed_call`) over the same steps.

A breaker may offer a faster sync decorator by overriding
`BreakerForms.guarded`: the compiled local core does (its GuardedFunction
is the compiled twin of the one here, with the same decisions and clock
reads).
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
)
from typing import Any, ParamSpec, TypeVar, cast, overload

from ratefuse.core.errors import CircuitOpenError
from ratefuse.engine.breaker_steps import (
    UNTIMED,
    Breaker,
    BreakerCall,
    BreakerPermit,
    elapsed_seconds,
    finish,
    permit_or_error_async,
    record_exception,
    record_result,
    rejected,
    rejected_async,
    start,
)
from ratefuse.engine.held_iteration import Done, relay, relay_async
from ratefuse.engine.timed_call import CallExecutor, TimedFunction, timed_async

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")
Relayed = TypeVar("Relayed")  # what a generator form relays: an (async) iterable

ExcType = type[BaseException] | None
Traceback = types.TracebackType | None

# The names a form's users (the breakers, the tests) import from here.
__all__ = [
    "UNTIMED",
    "AsyncBreakerForms",
    "Breaker",
    "BreakerForms",
    "BreakerPermit",
    "CallExecutor",
    "GuardedBlock",
    "GuardedFunction",
    "TimedFunction",
    "elapsed_seconds",
    "finish",
    "guard_any",
    "guard_async",
    "guard_async_generator",
    "guard_generator",
    "guarded_function",
    "record_exception",
    "record_result",
    "start",
]


class GuardedFunction(BreakerCall[P, R]):
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
        super().__init__(breaker, function, fallback)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        breaker = self._breaker
        # A sync breaker's answer (an asyncio one is no GuardedFunction's).
        permit = cast(BreakerPermit | CircuitOpenError, breaker.permit_or_error())
        if isinstance(permit, CircuitOpenError):
            return cast(R, rejected(permit, self._fallback, args, kwargs))
        start_ns = start(breaker, permit)
        try:
            result = self._function(*args, **kwargs)
        except BaseException as exc:
            record_exception(breaker, permit, start_ns, exc)
            raise
        record_result(breaker, permit, start_ns, result)
        return result

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
        permit = await permit_or_error_async(breaker)
        if isinstance(permit, CircuitOpenError):
            return cast(T, await rejected_async(permit, fallback, args, kwargs))
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
            return _held(breaker, permit, function, fallback, args, kwargs)

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
            permit = await permit_or_error_async(breaker)
            return _held(breaker, permit, function, fallback, args, kwargs)

        return relay_async(hold)

    guarded.breaker = breaker  # type: ignore[attr-defined]
    return guarded


def _held(
    breaker: Breaker,
    permit: BreakerPermit | CircuitOpenError,
    function: Callable[..., Relayed],
    fallback: Callable[..., Relayed] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> tuple[Relayed, Done]:
    # A generator form's iterable under ``permit`` and what ends it: the
    # function's (its outcome recorded when iteration ends), or the
    # fallback's when the breaker rejected the call (nothing recorded).
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


def timed_form(
    breaker: Breaker,
    function: Callable[P, R],
    fallback: Callable[..., Any] | None,
    timeout: float,
    timeout_is_failure: bool,
    executor: CallExecutor | None,
) -> Callable[P, R]:
    """`timed_form` is the form of ``function`` limited to ``timeout``
    seconds: `timed_async` for a coroutine function, a `TimedFunction`
    for a sync one; TypeError for a generator function (an iteration has
    no single call to time)."""
    if inspect.isasyncgenfunction(function) or inspect.isgeneratorfunction(function):
        raise TypeError(
            f"timeout applies to calls, not to generator functions, got {function!r}"
        )
    if inspect.iscoroutinefunction(function):
        return cast(
            Callable[P, R],
            timed_async(breaker, function, fallback, timeout, timeout_is_failure),
        )
    return TimedFunction(
        breaker, function, fallback, timeout, timeout_is_failure, executor
    )


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
        return self._enter(await permit_or_error_async(self._breaker))

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
        self,
        function: Callable[P, R],
        *,
        fallback: Callable[..., Any] | None = None,
        timeout: float | None = None,
        timeout_is_failure: bool = True,
        executor: CallExecutor | None = None,
    ) -> Callable[P, R]: ...

    @overload
    def decorate(
        self,
        function: None = None,
        *,
        fallback: Callable[..., Any] | None = None,
        timeout: float | None = None,
        timeout_is_failure: bool = True,
        executor: CallExecutor | None = None,
    ) -> Callable[[Callable[P, R]], Callable[P, R]]: ...

    def decorate(
        self,
        function: Callable[P, R] | None = None,
        *,
        fallback: Callable[..., Any] | None = None,
        timeout: float | None = None,
        timeout_is_failure: bool = True,
        executor: CallExecutor | None = None,
    ) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
        """`decorate` wraps ``function`` (sync or async) so that every call
        goes through the breaker; ``fallback`` None means the breaker's.
        Without ``function`` it returns the decorator. ``timeout`` (seconds,
        None: none) limits each call (`ratefuse.engine.timed_call`): an
        asyncio call is cancelled, a sync one runs in a worker of
        ``executor`` (None: the shared default) and is abandoned; either
        raises CallTimeout, recorded as a failure if ``timeout_is_failure``.
        Generator functions take no timeout (TypeError)."""
        if function is None:
            return functools.partial(
                self.decorate,
                fallback=fallback,
                timeout=timeout,
                timeout_is_failure=timeout_is_failure,
                executor=executor,
            )
        breaker = cast(Breaker, self)
        chosen = breaker.fallback if fallback is None else fallback
        if timeout is not None:
            return timed_form(
                breaker, function, chosen, timeout, timeout_is_failure, executor
            )
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

    def call_with_timeout(
        self,
        timeout: float,
        function: Callable[P, R],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """`call_with_timeout` is `call` limited to ``timeout`` seconds, as
        `decorate` with ``timeout`` (the default executor; a timeout is a
        failure). A keyword of its own would take ``timeout=`` from the
        called function's arguments, hence the separate method."""
        breaker = cast(Breaker, self)
        form = timed_form(breaker, function, breaker.fallback, timeout, True, None)
        return form(*args, **kwargs)

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
        timeout: float | None = None,
        timeout_is_failure: bool = True,
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """`decorate` wraps a coroutine function as `guard_async` does;
        ``fallback`` None means the breaker's; ``timeout`` as
        `BreakerForms.decorate`. TypeError for a function that is not a
        coroutine function."""
        breaker = cast(Breaker, self)
        chosen = breaker.fallback if fallback is None else fallback
        if inspect.isasyncgenfunction(function) and timeout is None:
            return cast(
                Callable[P, Coroutine[Any, Any, T]],
                guard_async_generator(breaker, function, chosen),
            )
        if not inspect.iscoroutinefunction(function):
            raise TypeError(
                f"{type(self).__name__} guards coroutine functions, got {function!r}"
            )
        if timeout is not None:
            return timed_async(breaker, function, chosen, timeout, timeout_is_failure)
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

    async def call_with_timeout(
        self,
        timeout: float,
        function: Callable[P, Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """`call_with_timeout` is `call` cancelled after ``timeout`` seconds
        (CallTimeout, recorded as a failure)."""
        return await self.decorate(function, timeout=timeout)(*args, **kwargs)

    def guard(self) -> GuardedBlock:
        """`guard` is a one-use ``async with`` context manager for a block."""
        return GuardedBlock(cast(Breaker, self))
