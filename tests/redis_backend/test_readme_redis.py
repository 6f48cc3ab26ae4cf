"""The README's Redis examples run as printed, against the servers the tests
start.

The examples connect as users do, with ``redis.Redis()`` (localhost:6379)
or a cluster node's address. Here ``import redis`` gives them a module
whose client classes are the real ones, subclassed only to connect to the
test's own servers on free loopback ports: ``Redis`` and
``redis.asyncio.Redis`` to the single node, ``RedisCluster`` to the
cluster, whatever host and port the example names. Everything else is
redis-py itself. ``ratefuse.toml`` is the README's TOML block with its
``url`` pointing at the node, in a working folder of the test's own.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from readme_examples import (
    EXAMPLES,
    PRINTED,
    TOML,
    example_id,
    needs_redis,
    run_example,
)
from redis_servers import RedisClusterServers, RedisServer

REDIS_EXAMPLES = [source for source in EXAMPLES if needs_redis(source)]


def pointed(base: type, port: int) -> type:
    """`pointed` is ``base`` connecting to 127.0.0.1:``port`` whatever
    address it is given (and still named and placed as ``base``, so that
    code inspecting a client's class sees redis-py's)."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.update(host="127.0.0.1", port=port)
        base.__init__(self, **kwargs)

    return type(
        base.__name__,
        (base,),
        {
            "__init__": __init__,
            "__module__": base.__module__,
            "__qualname__": base.__qualname__,
        },
    )


def module_like(real: types.ModuleType, **overrides: Any) -> types.ModuleType:
    """`module_like` is a module that is ``real`` but for ``overrides``."""
    module = types.ModuleType(real.__name__)
    module.__dict__.update(overrides)
    module.__dict__["__getattr__"] = lambda name: getattr(real, name)
    return module


@pytest.fixture
def readme_redis(
    redis_node: RedisServer,
    redis_cluster: RedisClusterServers,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`readme_redis` points the examples' ``import redis`` at the test's
    servers and gives them the README's ratefuse.toml."""
    asyncio_module = module_like(
        redis.asyncio,
        Redis=pointed(redis.asyncio.Redis, redis_node.port),
        RedisCluster=pointed(redis.asyncio.RedisCluster, redis_cluster.ports[0]),
    )
    redis_module = module_like(
        redis,
        Redis=pointed(redis.Redis, redis_node.port),
        RedisCluster=pointed(redis.RedisCluster, redis_cluster.ports[0]),
        asyncio=asyncio_module,
    )
    monkeypatch.setitem(sys.modules, "redis", redis_module)
    monkeypatch.setitem(sys.modules, "redis.asyncio", asyncio_module)
    url = f"redis://127.0.0.1:{redis_node.port}/0"
    (tmp_path / "ratefuse.toml").write_text(
        TOML.replace("redis://127.0.0.1:6379/0", url)
    )
    monkeypatch.chdir(tmp_path)


def test_readme_has_redis_examples() -> None:
    assert len(REDIS_EXAMPLES) >= 5
    assert "redis://127.0.0.1:6379/0" in TOML


@pytest.mark.usefixtures("readme_redis")
@pytest.mark.parametrize("source", REDIS_EXAMPLES, ids=example_id)
def test_readme_redis_example_runs(
    source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_example(source)
    if source in PRINTED:
        assert capsys.readouterr().out == PRINTED[source]


@pytest.mark.usefixtures("readme_redis")
def test_the_examples_reach_the_test_servers_only(redis_node: RedisServer) -> None:
    # The redirection is what makes the examples' addresses safe to run: a
    # client built as the README builds it talks to the test's node.
    import redis as examples_redis

    client = examples_redis.Redis()
    try:
        assert client.connection_pool.connection_kwargs["port"] == redis_node.port
        assert isinstance(client, redis.Redis)
        assert type(client).__module__ == redis.Redis.__module__
        assert client.ping()
    finally:
        client.close()
