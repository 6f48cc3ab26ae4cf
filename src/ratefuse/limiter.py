"""`Limiter`: rate limits for one subject, decided by the compiled engine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, overload

from ratefuse.core.args import shown
from ratefuse.core.spec import LimitSpec
from ratefuse.engine.forms import SubjectForms
from ratefuse.engine.subject import LimiterCore
from ratefuse.protocols import (
    AnyRateLimiter,
    LimiterBackend,
    SubjectT,
    limiter_backend,
)
from ratefuse.rates import (
    DEFAULT_ALGORITHM,
    Rate,
    RateLike,
    build_specs,
    canonical_algorithm,
    to_rates,
)

Clock = Callable[[], int]
Sleep = Callable[[float], object]
AsyncSleep = Callable[[float], Awaitable[object]]


def check_callable(field: str, value: object) -> None:
    """`check_callable` raises ValueError unless ``value`` is None or callable."""
    if value is not None and not callable(value):
        raise ValueError(f"{field} must be callable or None, got {shown(value)}")


def reject_backend_options(
    kind: str, options: dict[str, Any], limits: object = None
) -> None:
    """`reject_backend_options` raises TypeError naming the first of
    ``options``: options of a backend's limiter, given to a ``kind``
    without a backend. ``burst`` is a field of a rate, and the message
    spells the Rate to pass instead (from ``limits`` when it is one rate)."""
    for field, value in options.items():
        if field == "burst":
            raise TypeError(
                f"{kind}() got burst={shown(value)}: burst is part of a rate, "
                f"pass {kind}({burst_hint(limits, value)})"
            )
        raise TypeError(
            f"{kind}() got {field}={shown(value)}: an option of a backend's "
            "limiter (pass backend=...); an in-memory limiter does not take it"
        )


def burst_hint(limits: object, burst: object) -> str:
    """`burst_hint` is the Rate with ``burst`` that ``limits`` meant, as
    source text: ``Rate(10, 1.0, burst=20)`` for "10/s", a template when
    ``limits`` is not one readable rate."""
    try:
        rates = to_rates(limits)  # type: ignore[arg-type]
    except ValueError:
        rates = ()
    if len(rates) == 1:
        rate = rates[0]
        return f"Rate({rate.limit}, {rate.period!r}, burst={shown(burst)})"
    return f"Rate(limit, period, burst={shown(burst)})"


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
    return lower_limits(limits, algorithm)


def lower_limits(
    limits: RateLike, algorithm: str
) -> tuple[tuple[Rate, ...], str, tuple[LimitSpec, ...]]:
    """`lower_limits` is ``limits`` as rates, the canonical algorithm, and
    the cores' specs; ValueError for what the algorithm cannot honour."""
    rates = to_rates(limits)
    name = canonical_algorithm(algorithm)
    return rates, name, build_specs(rates, name)


class InMemoryLimiter(SubjectForms, LimiterCore):
    """`InMemoryLimiter` is the in-memory `Limiter`, constructed: the
    limits, the engine, and what a `Limiter` does besides its verbs.
    Construct it as ``Limiter(...)`` (see there)."""

    # A class of its own because mypy reads a class's __init__ rather than
    # the overloads of its __new__ when the same class defines both.

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        clock: Clock | None = None,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
        backend: None = None,
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

    def update(self, limits: RateLike, algorithm: str | None = None) -> None:
        """`update` replaces the limits (and, if given, the algorithm) in one
        atomic step, keeping the state where it means the same (see
        `reconfigure`, the cores' form, which takes specs); ``rates`` and
        ``algorithm`` follow. Raises ValueError, changing nothing, for bad
        limits."""
        update_limits(self, limits, algorithm)

    def __repr__(self) -> str:
        rates = "; ".join(str(rate) for rate in self.rates)
        return f"Limiter({rates!r}, algorithm={self.algorithm!r})"


class Limiter(InMemoryLimiter):
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

    ``backend`` keeps the state outside the process instead: the
    constructor returns ``backend.limiter(limits, algorithm, clock=...,
    max_wait=..., sleep=..., async_sleep=..., **backend_options)``, a
    :class:`ratefuse.protocols.RateLimiter` (or AsyncRateLimiter), not a
    Limiter. ``backend`` is a :class:`ratefuse.protocols.LimiterBackend`
    (a :class:`ratefuse.shm.ShmBackend` gives a ShmLimiter; a
    :class:`ratefuse.redis.RedisBackend` a limiter whose state is in Redis,
    shared by every limiter with the same ``name``, which is required;
    an AsyncRedisBackend its asyncio twin), or a client an installed
    backend takes (``redis.Redis``, ``redis.RedisCluster``, a
    ``redis.asyncio`` client): see :class:`ratefuse.KeyedLimiter` for the
    Redis options. An option the backend cannot honour is a ValueError
    naming the field; ``backend_options`` without a backend are a
    TypeError naming the first.
    """

    @overload
    def __new__(
        cls,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        clock: Clock | None = None,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
        backend: None = None,
    ) -> Limiter: ...

    @overload
    def __new__(  # type: ignore[misc]  # a backend's limiter is no Limiter
        cls,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        clock: Clock | None = None,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
        backend: LimiterBackend[SubjectT, Any],
        **backend_options: Any,
    ) -> SubjectT: ...

    @overload
    def __new__(  # type: ignore[misc]
        cls,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        clock: Clock | None = None,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
        backend: object,
        **backend_options: Any,
    ) -> AnyRateLimiter: ...

    def __new__(
        cls,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        clock: Clock | None = None,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
        backend: object = None,
        **backend_options: Any,
    ) -> Any:
        if backend is None:
            reject_backend_options("Limiter", backend_options, limits)
            return super().__new__(cls)
        return limiter_backend(backend).limiter(
            limits,
            algorithm,
            clock=clock,
            max_wait=max_wait,
            sleep=sleep,
            async_sleep=async_sleep,
            **backend_options,
        )


def update_limits(limiter: Any, limits: RateLike, algorithm: str | None) -> None:
    """`update_limits` is `Limiter.update` for either public limiter: the
    core's atomic swap, then the attributes that describe it."""
    rates, name, specs = lower_limits(
        limits, limiter.algorithm if algorithm is None else algorithm
    )
    limiter.reconfigure(specs)
    limiter.rates, limiter.algorithm = rates, name
