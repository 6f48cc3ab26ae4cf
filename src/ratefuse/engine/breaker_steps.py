"""The steps every breaker form takes, over the public breaker protocol.

`Breaker` and `BreakerPermit` are what a form asks of a breaker; `start`,
`finish`, `record_exception` and `record_result` time a call and report its
outcome; `permit_or_error_async` takes a permit from a sync or an asyncio
breaker. The forms (`ratefuse.engine.breaker_forms`) and the time limiter
(`ratefuse.engine.timed_call`) are written over these.
"""

from __future__ import annotations

import inspect
import math
import types
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from ratefuse.core.errors import CircuitOpenError

P = ParamSpec("P")
R = TypeVar("R")

# The start of a call a form did not time (slow-call tracking was off);
# clock readings are >= 0.
UNTIMED = -1


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


async def permit_or_error_async(
    breaker: Breaker,
) -> BreakerPermit | CircuitOpenError:
    """`permit_or_error_async` is the answer of a sync or an asyncio
    breaker's `Breaker.permit_or_error`, awaited if need be."""
    answer = breaker.permit_or_error()
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


def rejected(
    error: CircuitOpenError,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """`rejected` is a rejected call's answer: ``fallback(*args, **kwargs)``,
    or ``error`` raised when there is no fallback."""
    if fallback is None:
        raise error
    return fallback(*args, **kwargs)


async def rejected_async(
    error: CircuitOpenError,
    fallback: Callable[..., Any] | None,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """`rejected_async` is `rejected` for an asyncio call: the fallback's
    answer is awaited if it is awaitable."""
    result = rejected(error, fallback, args, kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


class BreakerCall(ABC, Generic[P, R]):
    """`BreakerCall` is the base of a sync form that calls ``function``
    through ``breaker`` (``fallback``: a rejected call's answer, see
    `rejected`); it binds like a function when used as a method."""

    def __init__(
        self,
        breaker: Breaker,
        function: Callable[P, R],
        fallback: Callable[P, R] | None,
    ) -> None:
        self._breaker = breaker
        self._function = function
        self._fallback = fallback

    @property
    def breaker(self) -> Breaker:
        """`breaker` is the breaker guarding the function."""
        return self._breaker

    @abstractmethod
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """`__call__` calls the function through the breaker."""

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return types.MethodType(self, instance)
