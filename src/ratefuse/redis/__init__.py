"""Fleet-wide rate limits in Redis: one round trip per decision, atomic
compound limits, a single Redis or Redis Cluster, sync and asyncio.

Needs the ``redis`` extra (``pip install 'ratefuse[redis]'``)::

    import redis
    from ratefuse.redis import RedisLimiter

    limiter = RedisLimiter("10/s; 1000/h", backend=redis.Redis(), name="api")
    if limiter.try_acquire(user_id):
        ...

Decisions are those of the local cores (the scripts are line-for-line
translations, held together by differential tests), in integer
microseconds on the Redis server's clock. See :class:`RedisLimiter` for the
failure policy and :mod:`ratefuse.redis._schema` for the key schema.

:class:`RedisBackend` and :class:`AsyncRedisBackend` are
:class:`ratefuse.protocols.LimiterBackend` objects, and `backend_for` (the
``redis`` entry point of the ``ratefuse.backends`` group) makes one of a
raw redis-py client: that is how ``KeyedLimiter(..., backend=redis.Redis())``
reaches this package without the facade importing it.
"""

from __future__ import annotations

import warnings

from ratefuse.core.backend_defaults import (
    DEFAULT_ON_BACKEND_ERROR,
    DEFAULT_TIMEOUT,
    POLICIES,
)
from ratefuse.redis._async import AsyncRedisStore
from ratefuse.redis._backed import AsyncRedisBackend, RedisBackend, backend_for
from ratefuse.redis._codec import ScriptReply
from ratefuse.redis._connection import DEFAULT_BREAKER_CONFIG
from ratefuse.redis._exchange import DEFAULT_CHUNK, ExchangeCounts
from ratefuse.redis._fleet_stats import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_IDLE_TTL,
    DEFAULT_MAX_PENDING,
    FleetBreakerStats,
)
from ratefuse.redis._lease_config import (
    DEFAULT_LEASE_LIFETIME,
    DEFAULT_LEASE_LOW_WATER,
    DEFAULT_LEASE_MAX_UNITS,
    DEFAULT_LEASE_MIN_UNITS,
    LeaseConfig,
)
from ratefuse.redis._leasing import DEFAULT_CACHE_MAX_KEYS, DENY_CACHE_ALGORITHMS
from ratefuse.redis._policy import (
    DEFAULT_DENY_RETRY_AFTER,
    DEFAULT_LOCAL_MAX_KEYS,
    DEFAULT_LOCAL_SHARE,
    FailurePolicy,
    LimiterStats,
)
from ratefuse.redis._schema import DEFAULT_PREFIX, KEY_VERSION, KeySchema
from ratefuse.redis._scripts import LEASE_ALGORITHMS
from ratefuse.redis._sync import RedisStore
from ratefuse.redis._wire_limits import SCRIPT_ALGORITHMS
from ratefuse.redis.fleet_breaker import AsyncFleetBreaker, FleetBreaker
from ratefuse.redis.limiter import AsyncRedisLimiter, RedisLimiter
from ratefuse.redis.protocol import (
    AsyncKeyedStore,
    AsyncSharedBackend,
    KeyedStore,
    SharedBackend,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BREAKER_CONFIG",
    "DEFAULT_CACHE_MAX_KEYS",
    "DEFAULT_CHUNK",
    "DEFAULT_DENY_RETRY_AFTER",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_IDLE_TTL",
    "DEFAULT_LEASE_LIFETIME",
    "DEFAULT_LEASE_LOW_WATER",
    "DEFAULT_LEASE_MAX_UNITS",
    "DEFAULT_LEASE_MIN_UNITS",
    "DEFAULT_LOCAL_MAX_KEYS",
    "DEFAULT_LOCAL_SHARE",
    "DEFAULT_MAX_PENDING",
    "DEFAULT_ON_BACKEND_ERROR",
    "DEFAULT_PREFIX",
    "DEFAULT_TIMEOUT",
    "DENY_CACHE_ALGORITHMS",
    "KEY_VERSION",
    "LEASE_ALGORITHMS",
    "POLICIES",
    "SCRIPT_ALGORITHMS",
    "AsyncFleetBreaker",
    "AsyncKeyedStore",
    "AsyncRedisBackend",
    "AsyncRedisLimiter",
    "AsyncRedisStore",
    "AsyncSharedBackend",
    "ExchangeCounts",
    "FailurePolicy",
    "FleetBreaker",
    "FleetBreakerStats",
    "KeySchema",
    "KeyedStore",
    "LeaseConfig",
    "LimiterStats",
    "RedisBackend",
    "RedisLimiter",
    "RedisStore",
    "ScriptReply",
    "SharedBackend",
    "backend_for",
]

# Names kept for callers of earlier releases, with what replaced them.
_DEPRECATED: dict[str, tuple[str, object]] = {
    "Verdict": ("ScriptReply", ScriptReply),
}


def __getattr__(name: str) -> object:
    # `Verdict` named three types in ratefuse; the Redis one is a script's
    # reply, hence its new name.
    if name in _DEPRECATED:
        new_name, value = _DEPRECATED[name]
        warnings.warn(
            f"ratefuse.redis.{name} is deprecated; use ratefuse.redis.{new_name}",
            DeprecationWarning,
            stacklevel=2,
        )
        return value
    raise AttributeError(f"module 'ratefuse.redis' has no attribute {name!r}")
