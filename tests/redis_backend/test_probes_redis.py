"""Readiness with a real Redis backend: reachable is ready; unreachable
is ready only while every limiter on it has a failure policy that answers
without Redis; liveness never asks Redis."""

from __future__ import annotations

from typing import Any

import httpx

from ratefuse.config import Registry
from ratefuse.probe_apps import asgi_probes_app
from ratefuse.probes import Probes
from redis_servers import RedisServer
from web_support import serve_asgi


def config(url: str, raising: bool) -> dict[str, Any]:
    limiters: dict[str, Any] = {
        "local": {"rate": "5/s", "backend": "main", "on_backend_error": "local"},
        "denying": {"rate": "5/s", "backend": "main", "on_backend_error": "deny"},
    }
    if raising:
        limiters["strict"] = {
            "rate": "5/s",
            "backend": "main",
            "on_backend_error": "raise",
        }
    return {
        "backends": {"main": {"url": url, "timeout": 0.5}},
        "limiters": limiters,
    }


def test_readiness_follows_the_backend_and_the_failure_policies(
    disposable_redis: RedisServer,
) -> None:
    url = f"redis://127.0.0.1:{disposable_redis.port}/0"
    with Registry(config(url, raising=True)) as registry:
        probes = Probes(registry, timeout=0.5)
        with (
            serve_asgi(asgi_probes_app(probes), lifespan="on") as base,
            httpx.Client(timeout=5.0) as http,
        ):
            ready = http.get(f"{base}/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"]["backend:main"] == {
                "ok": True,
                "reachable": True,
                "error": None,
                "breaker": "CLOSED",
                "limiters_without_fallback": ["strict"],
            }
            disposable_redis.kill()
            ready = http.get(f"{base}/readyz")
            assert ready.status_code == 503
            check = ready.json()["checks"]["backend:main"]
            assert (check["ok"], check["reachable"]) == (False, False)
            assert "Error" in check["error"]
            assert http.get(f"{base}/livez").status_code == 200
            # Without the "raise" limiter the policies answer: ready.
            registry.update(config(url, raising=False), allow_removals=True)
            ready = http.get(f"{base}/readyz")
            assert ready.status_code == 200
            assert ready.json()["checks"]["backend:main"]["reachable"] is False
