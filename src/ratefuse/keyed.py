"""`KeyedLimiter`: one quota per key (user, tenant, token, address), in a
bounded compiled table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ratefuse._backends import backend_arguments, keyed_on_backend
from ratefuse.core.keys import DEFAULT_MAX_KEYS
from ratefuse.engine.forms import KeyedForms
from ratefuse.engine.keyed import KeyedLimiterCore
from ratefuse.limiter import configure, update_limits
from ratefuse.rates import DEFAULT_ALGORITHM, RateLike

__all__ = ["DEFAULT_MAX_KEYS", "KeyedLimiter"]


class KeyedLimiter(KeyedForms, KeyedLimiterCore):
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

    ``backend`` keeps the states outside the process instead, and the
    constructor returns that backend's limiter: a
    :class:`ratefuse.shm.ShmBackend` gives a ShmKeyedLimiter (every process
    of the host); a :class:`ratefuse.redis.RedisBackend` or a
    ``redis.Redis`` / ``redis.RedisCluster`` client gives a Redis-backed
    limiter (the whole fleet; ``name`` names the shared quota and is
    required; ``on_backend_error``, ``local_share``, ``local_max_keys`` and
    further keyword options are RedisLimiter's), with the same verbs minus
    ``now=`` and ``reserve``, plus ``decide_many(keys, costs=None)``,
    ``close()``; an AsyncRedisBackend or a ``redis.asyncio`` client gives
    the asyncio twin (awaited verbs). An option that backend cannot honour
    (``max_keys`` off its default, leaky_bucket on Redis, ``name`` without
    a backend) is a ValueError naming the field.
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
        max_keys = kwargs.pop("max_keys", DEFAULT_MAX_KEYS)
        return keyed_on_backend(
            limits, algorithm, backend, max_keys=max_keys, **backend_arguments(kwargs)
        )

    def __init__(
        self,
        limits: RateLike,
        algorithm: str = DEFAULT_ALGORITHM,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
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
