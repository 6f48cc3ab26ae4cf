"""Redis-backed entries of a Registry against real servers: RedisLimiters
built from a `redis://` URL (single node and cluster), their health (PING,
and an unreachable server), their Prometheus counters, and an update that
replaces a Redis limiter whose limits change."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ratefuse.breaker import State
from ratefuse.config import Registry
from ratefuse.health import asgi_health_app, wsgi_health_app
from ratefuse.metrics import register
from ratefuse.redis import RedisLimiter
from redis_servers import RedisClusterServers, RedisServer
from web_support import serve_asgi, serve_wsgi

_names = itertools.count()


def _config(url: str, rate: str = "3/s", cluster: bool = False) -> dict[str, object]:
    # A fresh limiter name per test: the session's servers are shared.
    return {
        "backends": {"main": {"url": url, "cluster": cluster, "timeout": 2.0}},
        "limiters": {f"fleet{next(_names)}": {"rate": rate, "backend": "main"}},
        "breakers": {"upstream": {}},
    }


@pytest.fixture
def registry(redis_node: RedisServer) -> Iterator[Registry]:
    with Registry(_config(f"redis://127.0.0.1:{redis_node.port}/0")) as made:
        yield made


def _only_limiter(registry: Registry) -> tuple[str, RedisLimiter]:
    [(name, limiter)] = registry.limiters().items()
    assert isinstance(limiter, RedisLimiter)
    return name, limiter


def test_redis_limiter_decides_and_reports_healthy(registry: Registry) -> None:
    name, limiter = _only_limiter(registry)
    assert limiter.name == name
    assert [limiter.try_acquire("user") for _ in range(4)] == [True, True, True, False]
    health = registry.health(timeout=1.0)
    assert health.ok
    assert health.backends["main"].ok
    assert health.backends["main"].error is None
    latency = health.backends["main"].latency_s
    assert latency is not None
    assert 0 < latency < 1.0
    assert health.backends["main"].breaker == "CLOSED"


def test_update_keeps_or_replaces_redis_limiters(registry: Registry) -> None:
    name, limiter = _only_limiter(registry)
    url = registry.config.backends["main"].url
    backend = registry.backends()["main"]
    same = {
        "backends": {"main": {"url": url, "timeout": 2.0}},
        "limiters": {
            name: {"rate": "3/s", "backend": "main"},
            "local": {"rate": "1/s"},
        },
    }
    registry.update(same, allow_removals=True)  # drops the breaker
    assert registry.limiter(name) is limiter  # unchanged: the same object
    assert registry.backends()["main"] is backend
    registry.update(
        {**same, "limiters": {name: {"rate": "6/s", "backend": "main"}}},
        allow_removals=True,  # drops "local"
    )
    replaced = registry.limiter(name)
    assert replaced is not limiter
    assert isinstance(replaced, RedisLimiter)
    assert registry.backends()["main"] is backend  # the connections are kept
    assert [replaced.try_acquire("new key") for _ in range(7)] == [True] * 6 + [False]
    assert limiter.try_acquire("old holder")  # the old object still works


def test_prometheus_exposition_of_redis_entries(registry: Registry) -> None:
    name, limiter = _only_limiter(registry)
    limiter.try_acquire("k")
    prometheus = CollectorRegistry()
    register(registry, prometheus)
    families = {
        family.name: family
        for family in text_string_to_metric_families(
            generate_latest(prometheus).decode()
        )
    }
    # Every int field of stats() is its own counter, whatever the fields are.
    for field, value in vars(limiter.stats()).items():
        if isinstance(value, int) and not isinstance(value, bool):
            [sample] = families[f"ratefuse_redis_limiter_{field}"].samples
            assert sample.labels == {"limiter": name}
            assert sample.value == value
    [trips] = families["ratefuse_redis_backend_round_trips"].samples
    assert trips.labels == {"backend": "main"}
    assert trips.value >= 1
    states = {
        sample.labels["state"]: sample.value
        for sample in families["ratefuse_breaker_state"].samples
        if sample.labels["breaker"] == "backend:main"
    }
    assert states["CLOSED"] == 1.0
    assert sum(states.values()) == 1.0


def test_unreachable_backend_is_degraded_over_http(
    disposable_redis: RedisServer,
) -> None:
    registry = Registry(_config(f"redis://127.0.0.1:{disposable_redis.port}/0"))
    try:
        with serve_asgi(asgi_health_app(registry)) as url, httpx.Client() as client:
            assert client.get(f"{url}/health").status_code == 200
            disposable_redis.stop()
            response = client.get(f"{url}/health")
        assert response.status_code == 503
        backend = response.json()["backends"]["main"]
        assert backend["ok"] is False
        assert backend["latency_ms"] is None
        assert "Error" in backend["error"]
    finally:
        registry.close()


def test_cluster_backend(redis_cluster: RedisClusterServers) -> None:
    url = f"redis://127.0.0.1:{redis_cluster.ports[0]}"
    with Registry(_config(url, rate="2/s", cluster=True)) as registry:
        _, limiter = _only_limiter(registry)
        for key in ("a", "b", "c"):  # keys in different slots
            assert [limiter.try_acquire(key) for _ in range(3)] == [True, True, False]
        health = registry.health(timeout=1.0)
        assert health.ok
        assert health.backends["main"].ok
        assert health.backends["main"].breaker == "CLOSED"


def test_cluster_backend_health_shows_the_least_healthy_node(
    redis_cluster: RedisClusterServers,
) -> None:
    # Each cluster node has its own breaker; the backend's own carries only
    # their rules, so health must read the nodes' (it showed CLOSED with a
    # node's breaker open).
    url = f"redis://127.0.0.1:{redis_cluster.ports[0]}"
    with Registry(_config(url, rate="2/s", cluster=True)) as registry:
        _, limiter = _only_limiter(registry)
        for key in ("a", "b", "c"):
            limiter.try_acquire(key)
        nodes = registry.backends()["main"].redis.node_breakers()
        assert nodes
        next(iter(nodes.values())).force_open()
        assert registry.health(timeout=1.0).backends["main"].breaker == "FORCED_OPEN"


def _toml(tmp_path: Path, port: int) -> Path:
    # The README's example file, pointed at the session's Redis.
    path = tmp_path / "ratefuse.toml"
    path.write_text(
        f'[backends.main]\nurl = "redis://127.0.0.1:{port}/0"\n\n'
        f'[limiters.fleet{next(_names)}]\nrate = "1000/min"\nbackend = "main"\n\n'
        "[breakers.payments]\nfailure_rate_threshold = 50\nwait_duration = 5.0\n"
    )
    return path


def test_starlette_mount_from_toml_as_in_readme(
    tmp_path: Path, redis_node: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _toml(tmp_path, redis_node.port)
    monkeypatch.chdir(tmp_path)
    from starlette.applications import Starlette
    from starlette.routing import Route

    registry = Registry.from_toml("ratefuse.toml")
    app = Starlette(routes=[Route("/health", asgi_health_app(registry))])
    try:
        with serve_asgi(app) as url, httpx.Client() as client:
            response = client.get(f"{url}/health")
    finally:
        registry.close()
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["breakers"] == {"payments": "CLOSED"}
    assert body["backends"]["main"]["ok"] is True
    assert body["backends"]["main"]["latency_ms"] > 0


def test_flask_dispatch_as_in_readme(
    tmp_path: Path, redis_node: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _toml(tmp_path, redis_node.port)
    monkeypatch.chdir(tmp_path)
    from flask import Flask
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    registry = Registry.from_toml("ratefuse.toml")
    app = Flask(__name__)
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/health": wsgi_health_app(registry)}
    )
    try:
        with serve_wsgi(app) as url, httpx.Client() as client:
            healthy = client.get(f"{url}/health")
            registry.breaker("payments").transition_to(State.OPEN)
            degraded = client.get(f"{url}/health")
            other = client.get(f"{url}/elsewhere")
    finally:
        registry.close()
    assert healthy.status_code == 200
    assert healthy.json()["backends"]["main"]["ok"] is True
    assert degraded.status_code == 503
    assert degraded.json()["breakers"] == {"payments": "OPEN"}
    assert other.status_code == 404  # Flask's own routes are untouched
