"""The fleet breaker's own Redis client, made from the user's.

A breaker must notice a lost Redis within a bounded time, so it does not
use the user's client as is (redis-py retries a refused connection ten
times with backoff by default: seconds): it opens its own client with the
user's connection settings (host, auth, TLS, ...), ``timeout`` on every
connect, send and read, and no retries, like the limiter backend does.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry

from ratefuse.redis._connection import connection_settings, start_nodes, start_pool

FleetClient = redis.Redis | RedisCluster


def fleet_client_factory(
    client: FleetClient, timeout: float
) -> Callable[[], FleetClient]:
    """`fleet_client_factory` returns a function that opens a client like
    ``client`` with ``timeout`` seconds per operation and no retries.
    Opening a cluster client reads its slot map, so it can raise."""
    retry = Retry(NoBackoff(), 0)
    if not isinstance(client, RedisCluster):
        return _single(redis.Redis, redis.ConnectionPool, client, timeout, retry)
    pool, nodes = start_pool(client)
    settings = connection_settings(pool.connection_kwargs, timeout, retry)
    for name in ("host", "port", "retry", "connection_class", "db"):
        settings.pop(name, None)
    return _cluster(RedisCluster, ClusterNode, nodes, retry, settings)


AsyncFleetClient = redis.asyncio.Redis | AsyncRedisCluster


def async_fleet_client_factory(
    client: AsyncFleetClient, timeout: float
) -> Callable[[], AsyncFleetClient]:
    """`async_fleet_client_factory` is `fleet_client_factory` for
    ``redis.asyncio`` clients (a cluster client reads its slot map on its
    first command)."""
    retry = AsyncRetry(NoBackoff(), 0)
    if not isinstance(client, AsyncRedisCluster):
        return _single(
            redis.asyncio.Redis, redis.asyncio.ConnectionPool, client, timeout, retry
        )
    nodes = start_nodes(client)
    settings = connection_settings(nodes[0].connection_kwargs, timeout, retry)
    # The asyncio cluster client takes named settings only.
    accepted = inspect.signature(AsyncRedisCluster.__init__).parameters
    settings = {
        name: value
        for name, value in settings.items()
        if name in accepted and name not in ("host", "port", "retry")
    }
    return _cluster(AsyncRedisCluster, AsyncClusterNode, nodes, retry, settings)


def _single(
    client_class: Any, pool_class: Any, client: Any, timeout: float, retry: object
) -> Callable[[], Any]:
    # Opens a one-node client with ``client``'s settings; from_pool: closing
    # the client closes the pool's connections.
    pool = client.connection_pool
    settings = connection_settings(pool.connection_kwargs, timeout, retry)
    connection_class = pool.connection_class

    def make_single() -> Any:
        return client_class.from_pool(
            pool_class(connection_class=connection_class, **settings)
        )

    return make_single


def _cluster(
    cluster_class: Any,
    node_class: Any,
    nodes: list[Any],
    retry: object,
    settings: dict[str, Any],
) -> Callable[[], Any]:
    # Opens a cluster client that starts from ``nodes``.
    seeds = [node_class(node.host, int(node.port)) for node in nodes]
    return lambda: cluster_class(startup_nodes=seeds, retry=retry, **settings)
