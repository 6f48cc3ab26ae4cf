"""Fixtures of the Redis tests: real servers on free loopback ports.

A single node and a 3-primary cluster are started once per session and
stopped by PID at its end (and on failure); tests that kill, pause or
restart a server get their own (`disposable_redis`). Every client a fixture
opens is closed.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

redis = pytest.importorskip("redis")

from script_path_support import SCRIPT_PATHS, force_path  # noqa: E402

from ratefuse.redis import RedisBackend  # noqa: E402
from ratefuse.redis._script_paths import ScriptPath  # noqa: E402
from redis_servers import RedisClusterServers, RedisServer  # noqa: E402

_names = itertools.count()


@pytest.fixture(scope="session")
def redis_node() -> Iterator[RedisServer]:
    """`redis_node` is the session's single Redis."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """`redis_cluster` is the session's 3-primary Redis Cluster."""
    cluster = RedisClusterServers().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def disposable_redis() -> Iterator[RedisServer]:
    """`disposable_redis` is a single Redis of the test's own, to kill,
    pause and restart."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def client(redis_node: RedisServer) -> Iterator[redis.Redis]:
    """`client` is a redis-py client of the session's single node."""
    connection = redis.Redis(host="127.0.0.1", port=redis_node.port)
    yield connection
    connection.close()


@pytest.fixture
def cluster_client(redis_cluster: RedisClusterServers) -> Iterator[redis.RedisCluster]:
    """`cluster_client` is a redis-py client of the session's cluster."""
    connection = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    yield connection
    connection.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that names a session-wide backend runs on both script
    paths (a test that asks for one by name at run time gets Functions)."""
    if {"node_backend", "cluster_backend"} & set(metafunc.fixturenames):
        metafunc.parametrize(
            "script_path",
            SCRIPT_PATHS,
            indirect=True,
            scope="session",
            ids=[path.name for path in SCRIPT_PATHS],
        )


@pytest.fixture(scope="session")
def script_path(request: pytest.FixtureRequest) -> ScriptPath:
    """`script_path` is the path the session-wide backends are pinned to."""
    return getattr(request, "param", ScriptPath.FUNCTIONS)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def node_backend(
    redis_node: RedisServer, script_path: ScriptPath
) -> Iterator[RedisBackend]:
    """`node_backend` is a session-wide backend on the single node (for
    Hypothesis tests, which cannot use function-scoped fixtures), pinned
    to each script path in turn."""
    connection = redis.Redis(host="127.0.0.1", port=redis_node.port)
    backend = RedisBackend(connection, timeout=5.0)
    force_path(backend, script_path)
    yield backend
    backend.close()
    connection.close()


@pytest.fixture(scope="session")
def cluster_backend(
    redis_cluster: RedisClusterServers, script_path: ScriptPath
) -> Iterator[RedisBackend]:
    """`cluster_backend` is a session-wide backend on the cluster, pinned
    to each script path in turn."""
    connection = redis.RedisCluster(host="127.0.0.1", port=redis_cluster.ports[0])
    backend = RedisBackend(connection, timeout=5.0)
    force_path(backend, script_path)
    yield backend
    backend.close()
    connection.close()


@pytest.fixture(scope="session")
def fresh_name() -> Callable[[], str]:
    """`fresh_name()` is a limiter name no other test uses."""
    return lambda: f"test-{next(_names)}"
