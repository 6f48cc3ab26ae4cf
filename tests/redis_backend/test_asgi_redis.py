"""The middlewares on Redis-backed limiters: AsyncRedisLimiter awaited by
the ASGI middleware under uvicorn, RedisLimiter under the WSGI one, both on
the session's real redis-server; two app instances share one quota."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import redis
import redis.asyncio
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route as StarletteRoute

from ratefuse.redis import AsyncRedisLimiter, RedisLimiter
from ratefuse.web import (
    Limit,
    RateLimitMiddleware,
    RateLimitWSGIMiddleware,
    Route,
    header,
)
from web_support import serve_asgi, serve_wsgi


def hello_asgi(limiter: AsyncRedisLimiter) -> Starlette:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        yield
        # Its connections belong to this event loop: close them in it.
        await limiter.aclose()

    return Starlette(routes=[StarletteRoute("/hello", hello)], lifespan=lifespan)


def hello_wsgi(environ: dict[str, object], start_response: object) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])  # type: ignore[operator]
    return [b"hello"]


def test_fleet_quota_shared_by_an_asgi_and_a_wsgi_app(redis_node, fresh_name) -> None:
    name = fresh_name()
    url = f"redis://127.0.0.1:{redis_node.port}"
    # The async client is made inside uvicorn's loop, on first use.
    async_limiter = AsyncRedisLimiter(
        "3/minute", backend=redis.asyncio.Redis.from_url(url), name=name
    )
    sync_client = redis.Redis.from_url(url)
    sync_limiter = RedisLimiter("3/minute", backend=sync_client, name=name)
    key = header("x-tenant")
    asgi_app = RateLimitMiddleware(
        hello_asgi(async_limiter), [Route("/hello", Limit(async_limiter, key=key))]
    )
    wsgi_app = RateLimitWSGIMiddleware(
        hello_wsgi, [Route("/hello", Limit(sync_limiter, key=key))]
    )
    try:
        with (
            serve_asgi(asgi_app, lifespan="on") as asgi_url,
            serve_wsgi(wsgi_app) as wsgi_url,
            httpx.Client() as client,
        ):
            tenant = {"x-tenant": "acme"}
            first = client.get(f"{asgi_url}/hello", headers=tenant)
            assert first.status_code == 200
            assert first.text == "hello"
            assert first.headers["ratelimit-policy"] == '"default";q=3;w=60'
            assert first.headers["ratelimit"] == '"default";r=2;t=20'
            assert client.get(f"{wsgi_url}/hello", headers=tenant).status_code == 200
            assert client.get(f"{asgi_url}/hello", headers=tenant).status_code == 200
            # The fleet's quota is spent, whichever app is asked.
            for base in (asgi_url, wsgi_url):
                denied = client.get(f"{base}/hello", headers=tenant)
                assert denied.status_code == 429
                assert 1 <= int(denied.headers["retry-after"]) <= 20
            other = client.get(f"{wsgi_url}/hello", headers={"x-tenant": "globex"})
            assert other.status_code == 200
    finally:
        sync_limiter.close()
        sync_client.close()
    # Every decision was Redis's own: none fell back to a local quota.
    assert async_limiter.stats().fallbacks == 0
    assert sync_limiter.stats().fallbacks == 0
