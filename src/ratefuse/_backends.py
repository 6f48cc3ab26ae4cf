"""Where ``Limiter(..., backend=...)`` and ``KeyedLimiter(..., backend=...)``
send their arguments: the limiter of that backend.

- a :class:`ratefuse.shm.ShmBackend`: the shared-memory limiters (one host);
- a :class:`ratefuse.redis.RedisBackend` or a ``redis.Redis`` /
  ``redis.RedisCluster`` client: the Redis limiters (a fleet), sync;
- an :class:`ratefuse.redis.AsyncRedisBackend` or a ``redis.asyncio``
  client: the same with awaited verbs.

The in-memory hot path never comes here (``backend=None``). An option the
backend's limiter cannot honour is a ValueError naming the field, at
construction; redis is imported only when a backend needs it.
"""

from __future__ import annotations

import sys
from typing import Any

from ratefuse.core.keys import DEFAULT_MAX_KEYS


def reject_shared_options(named: dict[str, Any], extra: dict[str, Any]) -> None:
    """`reject_shared_options` raises for an in-memory limiter given a
    shared-state option: ValueError naming the first of ``named`` given
    (not None), TypeError naming the first of ``extra`` (the keyword
    options only a backend's limiter knows)."""
    for field, value in named.items():
        if value is not None:
            raise ValueError(
                f"{field} applies only to a limiter with a backend "
                f"(backend=...), got {field}={value!r}"
            )
    for field in extra:
        raise TypeError(
            f"unexpected keyword argument {field!r} (a limiter without a "
            "backend takes no backend options)"
        )


def backend_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """`backend_arguments` splits the keyword arguments a constructor passes
    on with ``backend=...`` (``max_keys`` already taken out) into those
    every backend's limiter takes (the clock and the waiting) and
    ``shared``: the shared-state options (name, failure policy, and any
    backend option), which only Redis limiters take; it empties
    ``kwargs`` into ``shared``."""
    named = {
        field: kwargs.pop(field, None)
        for field in ("clock", "max_wait", "sleep", "async_sleep")
    }
    return {**named, "shared": kwargs}


def _reject(field: str, value: object, kind: str) -> None:
    raise ValueError(f"{field} does not apply to a limiter on {kind}, got {value!r}")


def _reject_for_shm(options: dict[str, Any]) -> None:
    # The Redis limiters' options mean nothing to a shared-memory table.
    for field, value in options.items():
        if value is not None:
            _reject(field, value, "shared memory")


# Options a Redis limiter takes with a default: None leaves it.
_DEFAULTED: tuple[str, ...] = ("on_backend_error", "local_share", "local_max_keys")


def _redis_options(shared: dict[str, Any]) -> dict[str, Any]:
    if shared.get("name") is None:
        raise ValueError(
            "name must name the shared quota of a limiter on Redis "
            "(limiters with the same name share it), got None"
        )
    return {
        field: value
        for field, value in shared.items()
        if value is not None or field not in _DEFAULTED
    }


def _redis_kind(backend: object) -> str | None:
    # "sync", "async", or None for an object that is no Redis backend.
    # Without redis imported, no object can be a Redis client (its class
    # would have imported it), so an in-memory program never imports it.
    if "redis" not in sys.modules:
        return None
    import redis
    import redis.asyncio
    from redis.cluster import RedisCluster

    from ratefuse.redis import AsyncRedisBackend, RedisBackend

    if isinstance(backend, (RedisBackend, redis.Redis, RedisCluster)):
        return "sync"
    if isinstance(
        backend,
        (AsyncRedisBackend, redis.asyncio.Redis, redis.asyncio.RedisCluster),
    ):
        return "async"
    return None


def _bad_backend(backend: object) -> TypeError:
    return TypeError(
        "backend must be a ShmBackend, a RedisBackend or AsyncRedisBackend, or "
        "a redis.Redis / redis.RedisCluster client (sync or redis.asyncio), "
        f"got {type(backend).__name__}: {backend!r}"
    )


def keyed_on_backend(
    limits: Any,
    algorithm: str,
    backend: object,
    *,
    max_keys: int,
    clock: Any,
    max_wait: float | None,
    sleep: Any,
    async_sleep: Any,
    shared: dict[str, Any],
) -> Any:
    """`keyed_on_backend` is the keyed limiter of ``backend`` (see the
    module); raises TypeError for an unknown backend and ValueError
    naming the field for an option that backend does not take."""
    from ratefuse.shm import ShmBackend, ShmKeyedLimiter

    if isinstance(backend, ShmBackend):
        _reject_for_shm(shared)
        if max_keys != DEFAULT_MAX_KEYS:
            _reject("max_keys", max_keys, "shared memory (the ShmBackend sizes it)")
        return ShmKeyedLimiter(
            limits,
            algorithm,
            backend=backend,
            clock=clock,
            max_wait=max_wait,
            sleep=sleep,
            async_sleep=async_sleep,
        )
    kind = _redis_kind(backend)
    if kind is None:
        raise _bad_backend(backend)
    if max_keys != DEFAULT_MAX_KEYS:
        _reject("max_keys", max_keys, "Redis (use local_max_keys for the fallback)")
    options = _redis_options(shared)
    from ratefuse.redis._backed import AsyncRedisKeyedLimiter, RedisKeyedLimiter

    if kind == "sync":
        return RedisKeyedLimiter(
            limits,
            algorithm,
            backend=backend,
            max_wait=max_wait,
            sleep=sleep,
            async_sleep=async_sleep,
            clock=clock,
            **options,
        )
    if sleep is not None:
        _reject("sleep", sleep, "an asyncio Redis backend (use async_sleep)")
    return AsyncRedisKeyedLimiter(
        limits,
        algorithm,
        backend=backend,
        max_wait=max_wait,
        async_sleep=async_sleep,
        clock=clock,
        **options,
    )


def limiter_on_backend(
    limits: Any,
    algorithm: str,
    backend: object,
    *,
    clock: Any,
    max_wait: float | None,
    sleep: Any,
    async_sleep: Any,
    shared: dict[str, Any],
) -> Any:
    """`limiter_on_backend` is the one-subject limiter of ``backend``: a
    ShmLimiter, or the keyed Redis limiter of `keyed_on_backend` wrapped
    around one subject."""
    from ratefuse.shm import ShmBackend, ShmLimiter

    if isinstance(backend, ShmBackend):
        _reject_for_shm(shared)
        return ShmLimiter(
            limits,
            algorithm,
            backend=backend,
            clock=clock,
            max_wait=max_wait,
            sleep=sleep,
            async_sleep=async_sleep,
        )
    keyed = keyed_on_backend(
        limits,
        algorithm,
        backend,
        max_keys=DEFAULT_MAX_KEYS,
        clock=clock,
        max_wait=max_wait,
        sleep=sleep,
        async_sleep=async_sleep,
        shared=shared,
    )
    from ratefuse.redis._backed import (
        AsyncRedisKeyedLimiter,
        AsyncRedisSubjectLimiter,
        RedisSubjectLimiter,
    )

    if isinstance(keyed, AsyncRedisKeyedLimiter):
        return AsyncRedisSubjectLimiter(keyed)
    return RedisSubjectLimiter(keyed)
