"""`KeyedLimiter`: one quota per key (user, tenant, token, address), in a
bounded compiled table."""

from __future__ import annotations

from typing import Any, overload

from ratefuse.core.keys import DEFAULT_MAX_KEYS
from ratefuse.engine.forms import KeyedForms
from ratefuse.engine.keyed import KeyedLimiterCore
from ratefuse.limiter import (
    AsyncSleep,
    Clock,
    Sleep,
    configure,
    reject_backend_options,
    update_limits,
)
from ratefuse.protocols import (
    AnyKeyedRateLimiter,
    KeyedT,
    LimiterBackend,
    limiter_backend,
)
from ratefuse.rates import DEFAULT_ALGORITHM, RateLike

__all__ = ["DEFAULT_MAX_KEYS", "InMemoryKeyedLimiter", "KeyedLimiter"]


class InMemoryKeyedLimiter(KeyedForms, KeyedLimiterCore):
    """`InMemoryKeyedLimiter` is the in-memory `KeyedLimiter`, constructed
    (a class of its own for the reason `InMemoryLimiter` is). Construct it
    as ``KeyedLimiter(...)`` (see there)."""

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
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
            max_keys,
            clock,
            None,
            max_wait=max_wait,
            sleep=sleep,
            async_sleep=async_sleep,
        )

    def update(self, limits: RateLike, algorithm: str | None = None) -> None:
        """`update` replaces every key's limits (and, if given, the
        algorithm) in one atomic step, as `Limiter.update`."""
        update_limits(self, limits, algorithm)

    def __repr__(self) -> str:
        rates = "; ".join(str(rate) for rate in self.rates)
        return (
            f"KeyedLimiter({rates!r}, algorithm={self.algorithm!r}, "
            f"max_keys={self.max_keys})"
        )


class KeyedLimiter(InMemoryKeyedLimiter):
    """`KeyedLimiter` admits at most the given rates for each key separately.

    ``limits``, ``algorithm``, ``clock``, ``max_wait``, ``sleep`` and
    ``async_sleep`` are as for :class:`ratefuse.Limiter`. Keys are str, bytes
    or int (``1``, ``"1"`` and ``b"1"`` are three keys; ``True`` is ``1``).

    ``max_keys`` (default 1,000,000) bounds the live states. A state back
    to "as if new" is dropped without changing any decision; when the table
    is full, the state closest to new among 16 sampled slots is evicted and
    counted in ``stats()["evictions"]``: the one place a keyed limiter may
    over-admit. Keys are fingerprinted with SipHash-1-3 under a per-process
    random secret: two keys share a state only if their 64-bit fingerprints
    collide (probability at most live_keys / 2**64 per new key), and someone
    who chooses keys cannot aim at a collision.

    Verbs take the key first: ``try_acquire(key, cost=1, now=None)``,
    ``decide(key, ...)``, ``reserve(key, ...)``, ``acquire(key, ...)``,
    ``await acquire_async(key, ...)``, ``reset(key)``, plus
    ``decide_many(keys, costs=None, now=None, retry_after=False)`` and
    ``stats()``. Thread-safe: each decision is atomic, and decide_many
    releases the GIL for int64 key ids.

    ``backend`` keeps the states outside the process instead: the
    constructor returns ``backend.keyed_limiter(limits, algorithm,
    clock=..., max_wait=..., sleep=..., async_sleep=...,
    **backend_options)`` (with ``max_keys`` among the options when it is
    not the default), a :class:`ratefuse.protocols.KeyedRateLimiter` (or
    AsyncKeyedRateLimiter), not a KeyedLimiter. A
    :class:`ratefuse.shm.ShmBackend` gives a ShmKeyedLimiter (every process
    of the host); a :class:`ratefuse.redis.RedisBackend` or a
    ``redis.Redis`` / ``redis.RedisCluster`` client gives a Redis-backed
    limiter (the whole fleet; ``name`` names the shared quota and is
    required; ``on_backend_error``, ``local_share``, ``local_max_keys`` and
    further options are RedisLimiter's), with the same verbs minus
    ``now=`` and ``reserve``, plus ``decide_many`` (the in-memory form,
    without ``now=``), ``decide_many_decisions(keys, costs=None)`` and
    ``close()``; an AsyncRedisBackend or a ``redis.asyncio`` client gives
    the asyncio twin (awaited verbs). An option that backend cannot honour
    (``max_keys`` off its default, leaky_bucket on Redis) is a ValueError
    naming the field; ``backend_options`` without a backend are a
    TypeError naming the first.
    """

    @overload
    def __new__(
        cls,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Clock | None = None,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
        backend: None = None,
    ) -> KeyedLimiter: ...

    @overload
    def __new__(  # type: ignore[misc]  # a backend's limiter is no KeyedLimiter
        cls,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Clock | None = None,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
        backend: LimiterBackend[Any, KeyedT],
        **backend_options: Any,
    ) -> KeyedT: ...

    @overload
    def __new__(  # type: ignore[misc]
        cls,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Clock | None = None,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
        backend: object,
        **backend_options: Any,
    ) -> AnyKeyedRateLimiter: ...

    def __new__(
        cls,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        clock: Clock | None = None,
        max_wait: float | None = None,
        sleep: Sleep | None = None,
        async_sleep: AsyncSleep | None = None,
        backend: object = None,
        **backend_options: Any,
    ) -> Any:
        if backend is None:
            reject_backend_options("KeyedLimiter", backend_options, limits)
            return super().__new__(cls)
        if max_keys != DEFAULT_MAX_KEYS:
            backend_options["max_keys"] = max_keys
        return limiter_backend(backend).keyed_limiter(
            limits,
            algorithm,
            clock=clock,
            max_wait=max_wait,
            sleep=sleep,
            async_sleep=async_sleep,
            **backend_options,
        )
