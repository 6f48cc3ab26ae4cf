"""The middlewares with limiters named in a ratefuse.config.Registry: the
name is resolved at construction, and a hot reload of the registry changes
the enforced quota and the RateLimit-Policy header without a restart."""

from __future__ import annotations

import httpx
from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route as Endpoint

from ratefuse.config import Registry
from ratefuse.web import Limit, RateLimitMiddleware, RateLimitWSGIMiddleware, Route
from web_support import ManualClock, serve_asgi, serve_wsgi


def config(rate: str) -> dict[str, object]:
    return {"limiters": {"per_client": {"rate": rate, "keyed": True}}}


def starlette_app() -> Starlette:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    return Starlette(routes=[Endpoint("/hello", hello)])


def test_asgi_limits_follow_a_registry_reload() -> None:
    clock = ManualClock()
    registry = Registry(config("2/10s"), clock=clock)
    app = RateLimitMiddleware(
        starlette_app(),
        [Route("/hello", Limit("per_client"))],
        registry=registry,
        headers_on="all",
    )
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        first = client.get("/hello")
        assert first.headers["ratelimit-policy"] == '"default";q=2;w=10'
        assert client.get("/hello").status_code == 200
        assert client.get("/hello").status_code == 429
        registry.update(config("4/10s"))
        # The state is kept: the bucket is still spent, now described as 4/10s.
        after = client.get("/hello")
        assert after.status_code == 429
        assert after.headers["ratelimit-policy"] == '"default";q=4;w=10'
        assert after.headers["retry-after"] == "3"  # 2.5 s: one unit of 4/10s
        clock.advance(2.5)  # 2/10s would still deny (next unit after 5 s)
        assert client.get("/hello").status_code == 200


def test_wsgi_limits_follow_a_registry_reload() -> None:
    clock = ManualClock()
    registry = Registry(config("1/minute"), clock=clock)
    flask_app = Flask(__name__)
    flask_app.add_url_rule("/hello", "hello", lambda: "hello")
    app = RateLimitWSGIMiddleware(
        flask_app.wsgi_app,
        [Route("/hello", Limit("per_client"))],
        registry=registry,
        headers_on="all",
    )
    with serve_wsgi(app) as url, httpx.Client(base_url=url) as client:
        assert client.get("/hello").headers["ratelimit-policy"] == '"default";q=1;w=60'
        assert client.get("/hello").status_code == 429
        registry.update(config("3/minute"))
        clock.advance(20)  # one unit of 3/minute; 1/minute would still deny
        after = client.get("/hello")
        assert after.status_code == 200
        assert after.headers["ratelimit-policy"] == '"default";q=3;w=60'
