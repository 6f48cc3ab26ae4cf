"""Helpers shared by the breaker tests: a manual clock and a CircuitBreaker
built on either core."""

from __future__ import annotations

from typing import Any

from ratefuse.breaker import BreakerConfig, CircuitBreaker

S = 1_000_000_000
MS = 1_000_000


class ManualClock:
    """`ManualClock` is a clock the test moves by hand (integer ns); it
    counts how often it is read."""

    def __init__(self, now_ns: int = 0) -> None:
        self.now_ns = now_ns
        self.reads = 0

    def __call__(self) -> int:
        self.reads += 1
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * S)


_CLASSES: dict[type, type[CircuitBreaker]] = {}


def breaker_class(impl: Any) -> type[CircuitBreaker]:
    """`breaker_class` is CircuitBreaker on ``impl``'s core.

    CircuitBreaker subclasses the process-wide core and the shared forms and
    adds only methods (no ``__init__``, no ``super()``), so the same methods
    on the other core make the same public class for it.
    """
    core = impl.module("engine._breaker").BreakerCore
    if issubclass(CircuitBreaker, core):
        return CircuitBreaker
    if core not in _CLASSES:
        namespace = {
            key: value
            for key, value in vars(CircuitBreaker).items()
            if key not in ("__dict__", "__weakref__")
        }
        bases = (core, *CircuitBreaker.__bases__[1:])
        _CLASSES[core] = type("CircuitBreaker", bases, namespace)
    return _CLASSES[core]


def make_breaker(
    impl: Any,
    config: BreakerConfig | None = None,
    *,
    clock: ManualClock | None = None,
    **options: Any,
) -> CircuitBreaker:
    """`make_breaker` builds a CircuitBreaker on ``impl`` with a manual clock
    (a new one at 0 unless given)."""
    return breaker_class(impl)(
        "test", config, clock=ManualClock() if clock is None else clock, **options
    )


class Boom(Exception):
    """`Boom` is the failure the tests raise."""
