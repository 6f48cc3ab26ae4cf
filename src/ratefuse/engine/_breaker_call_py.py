"""The breaker's sync decorator, reference implementation: the spec of
``_breaker_call_c`` (which is called through vectorcall, with no argument
tuple built, and builds no C traceback entry for a rejection)."""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from ratefuse.core.breaker.spec import REJECTED

if TYPE_CHECKING:
    from ratefuse.engine._breaker_py import BreakerCore

P = ParamSpec("P")
R = TypeVar("R")


class GuardedFunction(Generic[P, R]):
    """`GuardedFunction` calls ``function`` through ``core``: rejected calls
    return ``fallback(*args, **kwargs)`` if a fallback is given, else raise
    CircuitOpenError; permitted ones are timed if the breaker is `timed`
    and their outcome recorded. Binds like a function when used as a method;
    `BreakerCore.guarded` also copies the function's name and doc onto it.
    Thread-safe.
    """

    def __init__(
        self,
        core: BreakerCore,
        function: Callable[P, R],
        fallback: Callable[P, R] | None = None,
    ) -> None:
        self._core = core
        self._function = function
        self._fallback = fallback

    @property
    def breaker(self) -> BreakerCore:
        """`breaker` is the breaker guarding the function."""
        return self._core

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        core = self._core
        generation, now = core._acquire()
        if generation == REJECTED:
            if self._fallback is not None:
                return self._fallback(*args, **kwargs)
            raise core._open_error(now)
        start_ns = core._start()
        try:
            result = self._function(*args, **kwargs)
        except BaseException as exc:
            core._guard_exception(generation, exc, start_ns)
            raise
        core._guard_result(generation, result, start_ns)
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
        return f"<GuardedFunction {self._function!r} by {self._core.name!r}>"
