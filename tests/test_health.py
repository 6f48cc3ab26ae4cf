"""The health endpoints on real servers: the ASGI app under uvicorn and the
WSGI app under wsgiref, driven by httpx on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest

from ratefuse.breaker import State
from ratefuse.config import Registry
from ratefuse.health import asgi_health_app, wsgi_health_app
from web_support import serve_asgi, serve_wsgi

Serve = Callable[[Any], AbstractContextManager[str]]


def _asgi(registry: Any) -> AbstractContextManager[str]:
    return serve_asgi(asgi_health_app(registry), lifespan="on")


def _wsgi(registry: Any) -> AbstractContextManager[str]:
    return serve_wsgi(wsgi_health_app(registry))


@pytest.fixture(params=[_asgi, _wsgi], ids=["asgi", "wsgi"])
def serve(request: pytest.FixtureRequest) -> Serve:
    """`serve` serves a health app of either kind for a registry."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


def test_endpoint_reports_breakers(serve: Serve, client: httpx.Client) -> None:
    registry = Registry({"breakers": {"db": {}, "search": {}}})
    with serve(registry) as url:
        healthy = client.get(f"{url}/health")
        assert healthy.status_code == 200
        assert healthy.headers["content-type"] == "application/json"
        assert healthy.headers["cache-control"] == "no-store"
        assert healthy.json() == {
            "status": "ok",
            "breakers": {"db": "CLOSED", "search": "CLOSED"},
            "backends": {},
        }
        registry.breaker("search").transition_to(State.OPEN)
        degraded = client.get(f"{url}/health")
        assert degraded.status_code == 503
        assert degraded.json()["status"] == "degraded"
        assert degraded.json()["breakers"]["search"] == "OPEN"
        head = client.head(f"{url}/health")
        assert head.status_code == 503
        assert head.content == b""
        refused = client.post(f"{url}/health")
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD"
