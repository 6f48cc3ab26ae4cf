"""What both backends need before any I/O: validated settings, the default
breaker, and the connection settings derived from a user's client."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from ratefuse.breaker import BreakerConfig, CircuitBreaker
from ratefuse.core.backend_defaults import DEFAULT_TIMEOUT
from ratefuse.redis._slots import Address

# The backend breaker's time window: the calls of the last
# BREAKER_WINDOW_TIMEOUTS timeouts (at least BREAKER_MIN_WINDOW seconds), in
# buckets of one timeout. A rate over a short time window, not over the last
# N calls: after heavy traffic a window of 20 calls was 20 successes, so a
# caller paid 10 timeouts in a row (1 s at the default 0.1 s) before the
# breaker opened; here the successes age out with their buckets, so
# fast-fail starts about one window (5 timeouts) after Redis stops
# answering, however busy it was before.
BREAKER_WINDOW_TIMEOUTS: Final = 5
BREAKER_MIN_WINDOW: Final = 0.5
# Three calls are enough to judge a window: a lone caller sees five.
BREAKER_MINIMUM_CALLS: Final = 3


def default_breaker_config(timeout: float = DEFAULT_TIMEOUT) -> BreakerConfig:
    """`default_breaker_config` is the rules of a backend's breaker for
    ``timeout`` seconds per round trip: it opens when at least half of the
    calls of the last max(5 timeouts, 0.5 s) failed (at least 3 calls);
    then fails fast for 1 s, doubling after each failed probe up to 30 s."""
    window = max(BREAKER_MIN_WINDOW, BREAKER_WINDOW_TIMEOUTS * check_timeout(timeout))
    return BreakerConfig(
        failure_rate_threshold=50.0,
        window_type="time",
        window_duration=window,
        window_buckets=BREAKER_WINDOW_TIMEOUTS,
        minimum_calls=BREAKER_MINIMUM_CALLS,
        wait_duration=1.0,
        backoff_multiplier=2.0,
        max_wait_duration=30.0,
        half_open_calls=1,
    )


# Client settings that do not carry over to the backend's connections:
# redis-py's own timeout bookkeeping, RESP3-only features and hooks of the
# cluster client (the backend routes by itself).
_NOT_COPIED: Final = (
    "orig_",
    "maint_notifications",
    "redis_connect_func",
    "retry_on_",
    "himport",
)


def check_timeout(timeout: float) -> float:
    """`check_timeout` returns ``timeout`` as float seconds or raises
    ValueError unless finite and > 0."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(f"timeout must be a number of seconds, got {timeout!r}")
    if not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be finite and > 0 seconds, got {timeout!r}")
    return float(timeout)


# The rules of a breaker a backend makes for itself, at DEFAULT_TIMEOUT.
DEFAULT_BREAKER_CONFIG: Final = default_breaker_config(DEFAULT_TIMEOUT)


def check_chunk(chunk: int) -> int:
    """`check_chunk` returns ``chunk`` (keys per batched call) or raises."""
    if (
        isinstance(chunk, bool)
        or not isinstance(chunk, int)
        or not 1 <= chunk <= 10_000
    ):
        raise ValueError(f"chunk must be an int in [1, 10000], got {chunk!r}")
    return chunk


def default_breaker(name: str, timeout: float = DEFAULT_TIMEOUT) -> CircuitBreaker:
    """`default_breaker` is a breaker with the default rules for
    ``timeout`` (see `default_breaker_config`)."""
    return CircuitBreaker(name, default_breaker_config(timeout))


def connection_settings(
    base: dict[str, Any], timeout: float, retry: object
) -> dict[str, Any]:
    """`connection_settings` is ``base`` (a client's connection kwargs) with
    the backend's own: ``timeout`` on every connect, send and read, no
    redis-py retries (a consuming call is never resent blindly), RESP2
    (what :mod:`._resp` reads; no push messages), bytes replies, no
    health-check pings."""
    settings = {
        name: value for name, value in base.items() if not name.startswith(_NOT_COPIED)
    }
    settings.update(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=retry,
        decode_responses=False,
        health_check_interval=0,
        protocol=2,
    )
    return settings


def start_pool(cluster: Any) -> tuple[Any, list[Any]]:
    """`start_pool` is the connection pool of a redis-py ``RedisCluster``'s
    default node, whose settings a backend's own connections copy, and the
    cluster's nodes; raises ValueError when the client has no node."""
    node = cluster.get_default_node()
    if node is None or node.redis_connection is None:
        raise ValueError("the RedisCluster client has no node to start from")
    return node.redis_connection.connection_pool, cluster.get_nodes()


def start_nodes(cluster: Any) -> list[Any]:
    """`start_nodes` is the nodes a ``redis.asyncio`` ``RedisCluster`` knows
    (its startup nodes before its first command); raises ValueError when
    it knows none."""
    nodes: list[Any] = cluster.get_nodes() or cluster.startup_nodes
    if not nodes:
        raise ValueError("the RedisCluster client has no node to start from")
    return nodes


def node_factory(
    connection_class: Any, settings: dict[str, Any]
) -> Callable[[Address | None], Any]:
    """`node_factory` makes unconnected connections of ``connection_class``
    with ``settings``, to ``address`` (None: the settings' own host)."""

    def make(address: Address | None) -> Any:
        if address is None:
            return connection_class(**settings)
        host, port = address
        return connection_class(**{**settings, "host": host, "port": port})

    return make


def uses_tls(connection_class: Any) -> bool:
    """`uses_tls` is true for a redis-py (sync or asyncio) TLS connection
    class: the cluster's nodes are then reached on their TLS ports."""
    return any(base.__name__ == "SSLConnection" for base in connection_class.__mro__)


def wrong_client(expected: str, client: object) -> TypeError:
    """`wrong_client` is the TypeError for a ``client`` that is not one of
    ``expected``."""
    return TypeError(f"client must be {expected}, got {type(client).__name__}")
