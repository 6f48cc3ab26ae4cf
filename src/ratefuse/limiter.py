"""`Limiter`: rate limits for one subject, decided by the compiled engine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ratefuse._backends import (
    backend_arguments,
    limiter_on_backend,
    reject_shared_options,
)
from ratefuse.core.spec import LimitSpec
from ratefuse.engine.forms import SubjectForms
from ratefuse.engine.subject import LimiterCore
from ratefuse.rates import (
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
    *,
    name: str | None,
    on_backend_error: str | None,
    local_share: float | None,
    local_max_keys: int | None,
    backend_options: dict[str, Any],
) -> tuple[tuple[Rate, ...], str, tuple[LimitSpec, ...]]:
    """`configure` validates the arguments every in-memory limiter takes and
    returns its rates, canonical algorithm and core specs. The shared-state
    options (``name`` .. ``local_max_keys``, ``backend_options``) must be
    unset: an in-memory limiter is only built without a backend (``__new__``
    returns the backend's limiter otherwise)."""
    reject_shared_options(
        {
            "name": name,
            "on_backend_error": on_backend_error,
            "local_share": local_share,
            "local_max_keys": local_max_keys,
        },
        backend_options,
    )
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

    ``backend`` keeps the state outside the process instead, and the
    constructor returns that backend's limiter: a
    :class:`ratefuse.shm.ShmBackend` gives a ShmLimiter; a
    :class:`ratefuse.redis.RedisBackend` or a ``redis.Redis`` /
    ``redis.RedisCluster`` client gives a limiter whose state is in Redis,
    shared by every limiter with the same ``name`` (required; options as
    :class:`ratefuse.KeyedLimiter`'s with a backend), with the verbs
    ``try_acquire(cost=1)``, ``decide``, ``reset``, ``acquire``, ``await
    acquire_async`` (sleeping the retry_after Redis reports), the forms
    above, ``stats()`` and ``close()``; no ``now=`` (the server's clock)
    and no ``reserve``. An AsyncRedisBackend or a ``redis.asyncio`` client
    gives the asyncio twin. An option that backend cannot honour is a
    ValueError naming the field.
    """

    def __new__(
        cls,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        backend: object = None,
        **kwargs: Any,
    ) -> Any:
        if backend is None:
            return super().__new__(cls)
        return limiter_on_backend(
            limits, algorithm, backend, **backend_arguments(kwargs)
        )

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        clock: Callable[[], int] | None = None,
        max_wait: float | None = None,
        sleep: Callable[[float], object] | None = None,
        async_sleep: Callable[[float], Awaitable[object]] | None = None,
        backend: None = None,
        name: str | None = None,
        on_backend_error: str | None = None,
        local_share: float | None = None,
        local_max_keys: int | None = None,
        **backend_options: Any,
    ) -> None:
        self.rates, self.algorithm, specs = configure(
            limits,
            algorithm,
            clock,
            sleep,
            async_sleep,
            name=name,
            on_backend_error=on_backend_error,
            local_share=local_share,
            local_max_keys=local_max_keys,
            backend_options=backend_options,
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


def update_limits(limiter: Any, limits: RateLike, algorithm: str | None) -> None:
    """`update_limits` is `Limiter.update` for either public limiter: the
    core's atomic swap, then the attributes that describe it."""
    rates, name, specs = lower_limits(
        limits, limiter.algorithm if algorithm is None else algorithm
    )
    limiter.reconfigure(specs)
    limiter.rates, limiter.algorithm = rates, name
