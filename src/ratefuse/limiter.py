"""`Limiter`: rate limits for one subject, decided by the compiled engine."""

from __future__ import annotations

from collections.abc import Callable

from ._engine import LimiterCore
from .rates import (
    DEFAULT_ALGORITHM,
    RateLike,
    build_specs,
    canonical_algorithm,
    to_rates,
)


class Limiter(LimiterCore):
    """`Limiter` admits at most the given rates for one subject.

    ``limits`` is a rate string ("10/s; 1000/h"), a :class:`Rate` or a
    sequence of either; several limits decide all-or-nothing and report the
    most restrictive. ``algorithm`` is one of :data:`ratefuse.ALGORITHMS`
    (default gcra; token_bucket is the same algorithm). ``clock`` returns
    integer nanoseconds; None means the monotonic clock (read in C on the
    compiled path). Explicit ``now=`` arguments are integer nanoseconds on
    the same clock.

    Verbs (inherited from the engine, so a call goes straight to the
    compiled core): ``try_acquire(cost=1, now=None) -> bool``,
    ``decide(cost=1, now=None) -> Decision``, ``reset()``. Cost 0 asks
    without consuming. Thread-safe: each decision is atomic.
    """

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        clock: Callable[[], int] | None = None,
    ) -> None:
        if clock is not None and not callable(clock):
            raise ValueError(f"clock must be callable or None, got {clock!r}")
        self.rates = to_rates(limits)
        self.algorithm = canonical_algorithm(algorithm)
        super().__init__(build_specs(self.rates, self.algorithm), clock)

    def __repr__(self) -> str:
        rates = "; ".join(str(rate) for rate in self.rates)
        return f"Limiter({rates!r}, algorithm={self.algorithm!r})"
