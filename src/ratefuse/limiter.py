"""`Limiter`: rate limits for one subject, decided by the compiled engine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ._engine import LimiterCore
from ._guard import SubjectForms
from ._spec import LimitSpec
from .rates import (
    DEFAULT_ALGORITHM,
    Rate,
    RateLike,
    build_specs,
    canonical_algorithm,
    to_rates,
)


def check_callable(field: str, value: object) -> None:
    """`check_callable` raises ValueError unless ``value`` is None or callable."""
    if value is not None and not callable(value):
        raise ValueError(f"{field} must be callable or None, got {value!r}")


def configure(
    limits: RateLike,
    algorithm: str,
    clock: object,
    sleep: object,
    async_sleep: object,
) -> tuple[tuple[Rate, ...], str, tuple[LimitSpec, ...]]:
    """`configure` validates the arguments every in-memory limiter takes and
    returns its rates, canonical algorithm and core specs."""
    for field, value in (
        ("clock", clock),
        ("sleep", sleep),
        ("async_sleep", async_sleep),
    ):
        check_callable(field, value)
    rates = to_rates(limits)
    name = canonical_algorithm(algorithm)
    return rates, name, build_specs(rates, name)


class Limiter(SubjectForms, LimiterCore):
    """`Limiter` admits at most the given rates for one subject.

    ``limits`` is a rate string ("10/s; 1000/h"), a :class:`Rate` or a
    sequence of either; several limits decide all-or-nothing and report the
    most restrictive. ``algorithm`` is one of :data:`ratefuse.ALGORITHMS`
    (default gcra; token_bucket is the same algorithm). ``clock`` returns
    integer nanoseconds; None means the monotonic clock (read in C on the
    compiled path). Explicit ``now=`` arguments are integer nanoseconds on
    the same clock. ``max_wait`` (seconds; None: unbounded) bounds every
    acquire's wait: with leaky_bucket this is the queue that shapes
    callers T apart. ``sleep``/``async_sleep`` replace ``time.sleep`` and
    ``asyncio.sleep`` (for tests with a manual clock).

    Verbs (inherited from the engine, so a call goes straight to the
    compiled core): ``try_acquire(cost=1, now=None) -> bool``,
    ``decide(cost=1, now=None) -> Decision``, ``reserve(cost=1,
    max_wait=None, now=None) -> Reservation``, ``acquire(cost=1,
    timeout=None)``, ``await acquire_async(cost=1, timeout=None)``,
    ``reset()``; and the forms ``limit(...)`` (a decorator),
    ``acquiring(...)`` (a context manager) and ``admit_or_raise``. Cost 0
    asks without consuming. Thread-safe: each decision is atomic.
    """

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        clock: Callable[[], int] | None = None,
        max_wait: float | None = None,
        sleep: Callable[[float], object] | None = None,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
    ) -> None:
        self.rates, self.algorithm, specs = configure(
            limits, algorithm, clock, sleep, async_sleep
        )
        super().__init__(
            specs,
            clock,
            max_wait=max_wait,
            sleep=sleep,
            async_sleep=async_sleep,
        )

    def __repr__(self) -> str:
        rates = "; ".join(str(rate) for rate in self.rates)
        return f"Limiter({rates!r}, algorithm={self.algorithm!r})"
