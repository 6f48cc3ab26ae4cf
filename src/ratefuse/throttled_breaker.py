"""`ThrottledBreaker`: an `AdaptiveThrottle` in front of a breaker.

The throttle refuses in proportion as the upstream's accept ratio falls;
the breaker opens only once the failure rate crosses its threshold. Put
together, a failing upstream first sees its load shed by the throttle, and
the breaker still stops everything when it is down::

    guarded = ThrottledBreaker(CircuitBreaker("api"), AdaptiveThrottle())

    @guarded
    def fetch(): ...

Every form of a breaker works (``@guarded``, ``decorate``, ``call``,
``guard()``), with the breaker's fallback: a request the throttle refuses
raises :class:`ratefuse.throttle.ThrottledError` (a CircuitOpenError), as
a rejection of the breaker would.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ratefuse.core.args import shown
from ratefuse.core.errors import CircuitOpenError
from ratefuse.engine.breaker_forms import BreakerForms, BreakerPermit
from ratefuse.throttle import AdaptiveThrottle, ThrottledError

AcceptsError = Callable[[BaseException], bool]
AcceptsResult = Callable[[object], bool]


def never(value: object) -> bool:
    """`never` is the default ``accepts_error``: a call that raised was not
    accepted by the upstream."""
    return False


def always(value: object) -> bool:
    """`always` is the default ``accepts_result``: a call that returned was
    accepted by the upstream."""
    return True


class ThrottledPermit:
    """`ThrottledPermit` is the breaker's permit for one call that the
    throttle let go: the outcome goes to both (a `release` gives no
    verdict to either)."""

    __slots__ = ("_owner", "_permit")

    def __init__(self, owner: ThrottledBreaker, permit: BreakerPermit) -> None:
        self._owner = owner
        self._permit = permit

    def on_success(self, duration: float, now: int | None = None) -> None:
        """`on_success` reports a call that succeeded."""
        self._permit.on_success(duration, now)
        self._owner.throttle.record(True)

    def on_error(
        self, duration: float, exc: BaseException, now: int | None = None
    ) -> None:
        """`on_error` reports a call that raised ``exc``."""
        self._permit.on_error(duration, exc, now)
        self._owner.throttle.record(self._owner.accepts_error(exc))

    def on_result(
        self, duration: float, result: object, now: int | None = None
    ) -> None:
        """`on_result` reports a call that returned ``result``."""
        self._permit.on_result(duration, result, now)
        self._owner.throttle.record(self._owner.accepts_result(result))

    def release(self, now: int | None = None) -> None:
        """`release` gives the permit back without a verdict."""
        self._permit.release(now)


class ThrottledBreaker(BreakerForms):
    """`ThrottledBreaker` asks ``throttle`` (an AdaptiveThrottle), then
    ``breaker`` (a sync breaker: CircuitBreaker or FleetBreaker) for every
    call. ``accepts_error(exc)`` says whether a call that raised was
    accepted by the upstream (default: never); ``accepts_result(result)``
    whether a call that returned was (default: always; pass the breaker's
    result predicate's opposite when a returned 503 is a failure).
    Thread-safe as its parts are.
    """

    __slots__ = ("accepts_error", "accepts_result", "breaker", "throttle")

    def __init__(
        self,
        breaker: Any,
        throttle: AdaptiveThrottle,
        *,
        accepts_error: AcceptsError = never,
        accepts_result: AcceptsResult = always,
    ) -> None:
        permit_or_error = getattr(breaker, "permit_or_error", None)
        if not callable(permit_or_error):
            raise TypeError(f"breaker must be a breaker, got {shown(breaker)}")
        if inspect.iscoroutinefunction(permit_or_error):
            raise TypeError(
                f"breaker must decide synchronously (an asyncio breaker's "
                f"permits are awaited), got {shown(breaker)}"
            )
        if not isinstance(throttle, AdaptiveThrottle):
            raise TypeError(
                f"throttle must be an AdaptiveThrottle, got {shown(throttle)}"
            )
        for field, value in (
            ("accepts_error", accepts_error),
            ("accepts_result", accepts_result),
        ):
            if not callable(value):
                raise TypeError(f"{field} must be callable, got {shown(value)}")
        self.breaker = breaker
        self.throttle = throttle
        self.accepts_error = accepts_error
        self.accepts_result = accepts_result

    @property
    def name(self) -> str:
        """`name` is the breaker's name."""
        name: str = self.breaker.name
        return name

    @property
    def fallback(self) -> Callable[..., Any] | None:
        """`fallback` is the breaker's fallback (called for throttled calls
        too)."""
        fallback: Callable[..., Any] | None = self.breaker.fallback
        return fallback

    @property
    def timed(self) -> bool:
        """`timed` is whether the breaker times calls."""
        return bool(self.breaker.timed)

    def now_ns(self) -> int:
        """`now_ns` reads the breaker's clock."""
        now: int = self.breaker.now_ns()
        return now

    def permit_or_error(
        self, now: int | None = None
    ) -> ThrottledPermit | CircuitOpenError:
        """`permit_or_error` is a permit, or the error of the rejection:
        ThrottledError when the throttle refuses, the breaker's
        CircuitOpenError when it rejects."""
        if not self.throttle.admit():
            return ThrottledError(self.throttle.name, 0.0)
        answer = self.breaker.permit_or_error(now)
        if isinstance(answer, CircuitOpenError):
            return answer
        return ThrottledPermit(self, answer)

    def try_acquire(self, now: int | None = None) -> ThrottledPermit | None:
        """`try_acquire` is `permit_or_error` answering None for a
        rejection."""
        answer = self.permit_or_error(now)
        return None if isinstance(answer, CircuitOpenError) else answer

    def __repr__(self) -> str:
        return f"ThrottledBreaker({self.breaker!r}, {self.throttle!r})"
