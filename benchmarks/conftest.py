"""Benchmarks run with pytest-benchmark; not part of the default test run.

Each round performs ``ratefuse.bench.scenarios.CALLS_PER_ROUND`` (1,000) calls, so
the time-per-round columns in microseconds read as ns per call. CI runs them
once with ``--benchmark-disable`` so they cannot rot.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # As timeit does (and `ratefuse bench`): no garbage collection while a
    # round is timed, or the objects other benchmarks keep alive would be
    # traversed on the clock of whichever benchmark allocates next.
    config.option.benchmark_disable_gc = True


TESTS = Path(__file__).parent.parent / "tests"


def _servers() -> ModuleType:
    # The test suite's Redis server fixtures, shared rather than copied
    # (with the helpers they import from the tests folder).
    if str(TESTS) not in sys.path:
        sys.path.append(str(TESTS))
    return importlib.import_module("redis_servers")


@pytest.fixture(scope="module")
def node() -> Iterator[object]:
    """`node` is a real redis-server on a free loopback port."""
    server = _servers().RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[object]:
    """`cluster` is a real 3-primary Redis Cluster on loopback ports."""
    nodes = _servers().RedisClusterServers().start()
    yield nodes
    nodes.stop()


@pytest.fixture(params=["node", "cluster"])
def client(request: pytest.FixtureRequest) -> Iterator[object]:
    """`client` is a redis-py client of the node, then of the cluster."""
    redis = pytest.importorskip("redis")
    if request.param == "node":
        port = request.getfixturevalue("node").port
        connection = redis.Redis(host="127.0.0.1", port=port)
    else:
        port = request.getfixturevalue("cluster").ports[0]
        connection = redis.RedisCluster(host="127.0.0.1", port=port)
    yield connection
    connection.close()
