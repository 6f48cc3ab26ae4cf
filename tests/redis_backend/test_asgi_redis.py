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

from ratefuse import Limiter
from ratefuse.protocols import is_keyed
from ratefuse.redis import AsyncRedisLimiter, RedisLimiter
from ratefuse.web import (
    Limit,
    RateLimitMiddleware,
    RateLimitWSGIMiddleware,
    Route,
    header,
)
from web_support import serve_asgi, serve_wsgi


def hello_asgi(*limiters: AsyncRedisLimiter) -> Starlette:
    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        yield
        # Their connections belong to this event loop: close them in it.
        for limiter in limiters:
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
        hello_asgi(async_limiter),
        [Route("/hello", Limit(async_limiter, key=key))],
        headers_on="all",
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


def test_a_hammering_tenant_does_not_drain_the_global_quota(
    redis_node, fresh_name
) -> None:
    # A per-tenant limit before a global one, both in Redis and shared by
    # an ASGI and a WSGI app: a tenant denied by its own limit asks the
    # global one with cost 0, which Redis answers without consuming.
    per_tenant, everyone = fresh_name(), fresh_name()
    url = f"redis://127.0.0.1:{redis_node.port}"
    async_limiters = [
        AsyncRedisLimiter(
            rate, backend=redis.asyncio.Redis.from_url(url), name=limiter_name
        )
        for rate, limiter_name in (("2/minute", per_tenant), ("5/minute", everyone))
    ]
    sync_client = redis.Redis.from_url(url)
    sync_limiters = [
        RedisLimiter(rate, backend=sync_client, name=limiter_name)
        for rate, limiter_name in (("2/minute", per_tenant), ("5/minute", everyone))
    ]

    def route(limiters: list[AsyncRedisLimiter] | list[RedisLimiter]) -> Route:
        return Route(
            "/hello",
            [
                Limit(limiters[0], key=header("x-tenant"), name="tenant"),
                Limit(limiters[1], key=lambda request: "all", name="global"),
            ],
        )

    asgi_app = RateLimitMiddleware(hello_asgi(*async_limiters), [route(async_limiters)])
    wsgi_app = RateLimitWSGIMiddleware(hello_wsgi, [route(sync_limiters)])
    try:
        with (
            serve_asgi(asgi_app, lifespan="on") as asgi_url,
            serve_wsgi(wsgi_app) as wsgi_url,
            httpx.Client() as client,
        ):
            abuser = {"x-tenant": "abuser"}
            statuses = [
                client.get(f"{base}/hello", headers=abuser).status_code
                for _ in range(10)
                for base in (asgi_url, wsgi_url)
            ]
            assert statuses == [200] * 2 + [429] * 18
            for base in (asgi_url, wsgi_url):
                denied = client.get(f"{base}/hello", headers=abuser)
                assert denied.status_code == 429
                assert 1 <= int(denied.headers["retry-after"]) <= 30
                assert '"tenant";r=0' in denied.headers["ratelimit"]
                assert '"global";r=3' in denied.headers["ratelimit"]
            # The global quota kept its 3 units for the other tenants.
            for base, tenant in [(asgi_url, "b"), (wsgi_url, "c"), (asgi_url, "d")]:
                ok = client.get(f"{base}/hello", headers={"x-tenant": tenant})
                assert ok.status_code == 200, tenant
            for base in (asgi_url, wsgi_url):
                spent = client.get(f"{base}/hello", headers={"x-tenant": "e"})
                assert spent.status_code == 429
                assert '"global";r=0' in spent.headers["ratelimit"]
    finally:
        for limiter in sync_limiters:
            limiter.close()
        sync_client.close()
    for limiter in [*async_limiters, *sync_limiters]:
        assert limiter.stats().fallbacks == 0


def test_a_redis_backed_limiter_is_one_quota_for_the_route(
    redis_node, fresh_name
) -> None:
    # Limiter(..., backend=redis) decides decide(cost), like Limiter: the
    # middlewares and the httpx guard must not pass it a key.
    client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    sync_limiter = Limiter("2/minute", backend=client, name=fresh_name())
    async_limiter = Limiter(
        "2/minute", backend=redis.asyncio.Redis(port=redis_node.port), name="a"
    )
    assert not is_keyed(sync_limiter)
    assert not is_keyed(async_limiter)
    app = RateLimitWSGIMiddleware(hello_wsgi, [Route("/hello", Limit(sync_limiter))])
    try:
        with serve_wsgi(app) as url, httpx.Client(base_url=url) as http:
            statuses = [http.get("/hello").status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
    finally:
        sync_limiter.close()
        client.close()
