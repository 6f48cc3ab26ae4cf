"""A configured Redis backend: the shared RedisBackend its limiters use,
and the PING that reports whether it is reachable. Imports redis only when
a configuration names a backend."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ratefuse.breaker import CircuitBreaker, State
from ratefuse.config._schema import BackendEntry, LimiterEntry
from ratefuse.health import BackendHealth

if TYPE_CHECKING:
    from ratefuse.redis import RedisBackend, RedisLimiter


# How far from healthy each breaker state is, for a backend of several.
_SEVERITY = {
    State.CLOSED: 0,
    State.DISABLED: 0,
    State.HALF_OPEN: 1,
    State.OPEN: 2,
    State.FORCED_OPEN: 2,
}


class Backend:
    """`Backend` is the backend ``name`` of a configuration: a RedisBackend
    on its own redis-py client, shared by the limiters naming it."""

    def __init__(self, name: str, entry: BackendEntry) -> None:
        from ratefuse.redis import RedisBackend

        self.name = name
        self.entry = entry
        self._client = _client(entry, None)
        self.redis: RedisBackend = RedisBackend(self._client, timeout=entry.timeout)

    @property
    def breaker(self) -> CircuitBreaker:
        """`breaker` guards the backend's round trips."""
        return self.redis.breaker

    def limiter(self, name: str, entry: LimiterEntry) -> RedisLimiter:
        """`limiter` is a RedisLimiter of ``entry`` named ``name`` here."""
        from ratefuse.redis import RedisLimiter

        return RedisLimiter(
            entry.rates,
            entry.algorithm,
            backend=self.redis,
            name=name,
            on_backend_error=entry.on_backend_error,  # type: ignore[arg-type]
        )

    def ping(self, timeout: float) -> BackendHealth:
        """`ping` sends PING on a fresh connection bounded by ``timeout``
        seconds (connect and reply) and reports the outcome."""
        started = time.perf_counter()
        client = None
        try:
            client = _client(self.entry, timeout)
            client.ping()
        except Exception as exc:  # any failure is an unreachable backend
            return BackendHealth(
                False, None, f"{type(exc).__name__}: {exc}", self._state()
            )
        finally:
            if client is not None:
                client.close()
        return BackendHealth(True, time.perf_counter() - started, None, self._state())

    def _state(self) -> str:
        # On a cluster each node has a breaker of its own (the backend's
        # only carries their rules): the least healthy one is the state.
        breakers = list(self.redis.node_breakers().values()) or [self.breaker]
        return max(
            (breaker.state for breaker in breakers), key=_SEVERITY.__getitem__
        ).name

    def close(self) -> None:
        """`close` closes the backend's connections and client."""
        self.redis.close()
        self._client.close()


def _client(entry: BackendEntry, timeout: float | None) -> Any:
    import redis
    from redis.cluster import RedisCluster

    options: dict[str, Any] = {}
    if timeout is not None:
        options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if entry.cluster:
        return RedisCluster.from_url(entry.url, **options)
    return redis.Redis.from_url(entry.url, **options)
