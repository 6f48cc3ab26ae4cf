"""RateLimitMiddleware on a real FastAPI app served by uvicorn on 127.0.0.1,
driven by httpx; every test runs with the compiled and the reference cores
(limiters built from the `impl` fixture's modules) on a manual clock."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ratefuse import KeyedLimiter, Limiter, Rate
from ratefuse.web import (
    PATH,
    Limit,
    RateLimitMiddleware,
    Route,
    forwarded_for,
    header,
)
from web_support import (
    ManualClock,
    check_headers_go_on_denials_only,
    keyed_limit,
    serve_asgi,
    subject_limit,
)


def make_app() -> FastAPI:
    app = FastAPI()

    @app.get("/items/{item_id}")
    def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.api_route("/login", methods=["GET", "POST"])
    def login() -> str:
        return "login"

    @app.get("/static/{name:path}")
    def static(name: str) -> str:
        return name

    @app.get("/users/{user_id}/posts")
    def posts(user_id: int) -> list[int]:
        return [user_id]

    return app


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def keyed(impl: Any, clock: ManualClock) -> Callable[..., Limit]:
    """`keyed(rate, **options)` is a Limit on a keyed core of `impl`."""
    return functools.partial(keyed_limit, impl, clock)


@pytest.fixture
def subject(impl: Any, clock: ManualClock) -> Callable[..., Limit]:
    """`subject(rate, **options)` is a Limit on a one-subject core."""
    return functools.partial(subject_limit, impl, clock)


@pytest.fixture
def serve() -> Iterator[Callable[..., httpx.Client]]:
    """`serve(routes, **options)` serves the app under the middleware and
    returns an httpx client on it."""
    with_servers: list[Any] = []

    def start(routes: list[Route], **options: Any) -> httpx.Client:
        app = RateLimitMiddleware(make_app(), routes, **options)
        server = serve_asgi(app)
        url = server.__enter__()
        client = httpx.Client(base_url=url)
        with_servers.append((server, client))
        return client

    yield start
    for server, client in with_servers:
        client.close()
        server.__exit__(None, None, None)


def test_headers_go_on_denials_by_default(serve, keyed) -> None:
    client = serve([Route("/items/*", keyed(key=header("x-api-key")))])
    check_headers_go_on_denials_only(client)


def test_status_headers_and_retry_after(serve, keyed, clock) -> None:
    client = serve(
        [Route("/items/*", keyed(key=header("x-api-key")))], headers_on="all"
    )
    api_key = {"x-api-key": "alice"}
    first = client.get("/items/1", headers=api_key)
    assert first.status_code == 200
    assert first.json() == {"id": "1"}
    assert first.headers["ratelimit-policy"] == '"default";q=2;w=10'
    assert first.headers["ratelimit"] == '"default";r=1;t=5'
    second = client.get("/items/2", headers=api_key)
    assert second.headers["ratelimit"] == '"default";r=0;t=10'
    denied = client.get("/items/3", headers=api_key)
    assert denied.status_code == 429
    assert denied.text == "Too Many Requests\n"
    assert denied.headers["retry-after"] == "5"
    assert denied.headers["ratelimit"] == '"default";r=0;t=10'
    assert denied.headers["ratelimit-policy"] == '"default";q=2;w=10'
    clock.advance(2.5)  # 2.5 s left: Retry-After rounds up to 3
    assert client.get("/items/4", headers=api_key).headers["retry-after"] == "3"
    clock.advance(2.5)
    again = client.get("/items/5", headers=api_key)
    assert again.status_code == 200
    assert "retry-after" not in again.headers


def test_keys_are_isolated(serve, keyed) -> None:
    client = serve([Route("/items/*", keyed(key=header("x-api-key")))])
    for _ in range(2):
        assert client.get("/items/1", headers={"x-api-key": "a"}).status_code == 200
    assert client.get("/items/1", headers={"x-api-key": "a"}).status_code == 429
    assert client.get("/items/1", headers={"x-api-key": "b"}).status_code == 200
    # Without the header the key is the client address: a quota of its own.
    assert client.get("/items/1").status_code == 200
    assert client.get("/items/1").status_code == 200
    assert client.get("/items/1").status_code == 429
    assert client.get("/items/1", headers={"x-api-key": "b"}).status_code == 200


def test_forwarded_for_keys_by_the_client_the_proxy_saw(serve, keyed) -> None:
    client = serve([Route("/items/*", keyed(key=forwarded_for(1)))])
    spoofed = {"x-forwarded-for": "6.6.6.6, 10.0.0.1"}
    for _ in range(2):
        assert client.get("/items/1", headers=spoofed).status_code == 200
    # The client changed what it sent, not what the proxy appended.
    other_lie = {"x-forwarded-for": "7.7.7.7, 10.0.0.1"}
    assert client.get("/items/1", headers=other_lie).status_code == 429
    assert (
        client.get("/items/1", headers={"x-forwarded-for": "10.0.0.2"}).status_code
        == 200
    )


def test_forwarded_for_reads_every_header_line(serve, keyed) -> None:
    # A proxy that appends its own X-Forwarded-For line (HAProxy's
    # option forwardfor) after the client's: the key is the proxy's entry,
    # not the first line, which the client wrote.
    client = serve([Route("/items/*", keyed(key=forwarded_for(1)))])

    def lines(claimed: str, seen: str) -> list[tuple[str, str]]:
        return [("x-forwarded-for", claimed), ("x-forwarded-for", seen)]

    for claimed in ("6.6.6.6", "7.7.7.7"):
        assert client.get("/items/1", headers=lines(claimed, "10.0.0.1")).is_success
    denied = client.get("/items/1", headers=lines("8.8.8.8", "10.0.0.1"))
    assert denied.status_code == 429
    scope = {
        "headers": [(b"x-forwarded-for", b"1.1.1.1"), (b"x-forwarded-for", b"2.2.2.2")]
    }
    assert forwarded_for(1).asgi(scope) == "2.2.2.2"  # type: ignore[misc]
    assert forwarded_for(2).asgi(scope) == "1.1.1.1"  # type: ignore[misc]
    assert header("x-forwarded-for").asgi(scope) == "1.1.1.1,2.2.2.2"  # type: ignore[misc]


def test_shadow_mode_counts_and_sets_headers_but_never_denies(serve, keyed) -> None:
    denials: list[int | None] = []
    client = serve(
        [Route("/items/*", keyed())],
        shadow=True,
        on_denied=lambda scope, outcome: denials.append(outcome.retry_after),
    )
    responses = [client.get("/items/1") for _ in range(4)]
    assert [response.status_code for response in responses] == [200] * 4
    # Headers on the responses it would have denied only (the default).
    assert ["ratelimit" in response.headers for response in responses] == [
        False,
        False,
        True,
        True,
    ]
    last = client.get("/items/1")
    assert last.status_code == 200
    assert last.headers["ratelimit"] == '"default";r=0;t=10'
    # A 200 tells no client to back off: the wait goes to on_denied only.
    assert "retry-after" not in last.headers
    assert denials == [5, 5, 5]


def test_shadow_mode_with_several_limits_sends_no_retry_after(
    serve, keyed, subject
) -> None:
    denials: list[int | None] = []
    per_key = keyed(name="per-key", key=header("x-api-key"))
    site = subject(Rate(5, 60.0), name="site")
    client = serve(
        [Route("/items/*", [per_key, site])],
        shadow=True,
        headers="both",
        headers_on="all",
        on_denied=lambda scope, outcome: denials.append(outcome.retry_after),
    )
    responses = [client.get("/items/1", headers={"x-api-key": "a"}) for _ in range(4)]
    assert [response.status_code for response in responses] == [200] * 4
    for response in responses:
        assert "retry-after" not in response.headers
        assert response.headers["ratelimit-policy"] == (
            '"per-key";q=2;w=10, "site";q=5;w=60'
        )
    # Shadow mode counts as enforcing would: the denied requests took
    # nothing from "site".
    assert responses[-1].headers["ratelimit"] == '"per-key";r=0;t=10, "site";r=3;t=24'
    assert responses[-1].headers["x-ratelimit-remaining"] == "0"
    assert denials == [5, 5]


def test_exemptions_by_path_and_predicate(serve, keyed) -> None:
    client = serve(
        [Route("/", keyed(), match="prefix")],
        exempt_paths=["/health"],
        exempt=lambda scope: scope["path"].startswith("/static/"),
    )
    for _ in range(5):
        health = client.get("/health")
        assert health.status_code == 200
        assert "ratelimit" not in health.headers
        assert client.get("/static/app.js").status_code == 200
    assert [client.get("/items/1").status_code for _ in range(3)] == [200, 200, 429]
    # A route without limits exempts too, and the first match wins.
    client = serve([Route("/items/7", []), Route("/items/*", keyed())])
    assert [client.get("/items/7").status_code for _ in range(3)] == [200] * 3
    assert [client.get("/items/8").status_code for _ in range(3)] == [200, 200, 429]


@pytest.mark.parametrize(
    ("route", "limited", "free"),
    [
        (Route("/login"), ["/login"], ["/login/x", "/items/1"]),
        (Route("/items/", match="prefix"), ["/items/1", "/items/a/b"], ["/login"]),
        (Route("/static/*.js"), ["/static/a.js"], ["/static/a/b.js", "/static/a.css"]),
        (Route("/static/**.js"), ["/static/a/b.js"], ["/static/a.css"]),
        (
            Route(r"/users/\d+/posts", match="regex"),
            ["/users/42/posts"],
            ["/users/x/posts"],
        ),
        (Route("/login", methods=["POST"]), ["POST /login"], ["GET /login"]),
    ],
    ids=["exact", "prefix", "glob", "globstar", "regex", "method"],
)
def test_route_patterns(serve, keyed, route, limited, free) -> None:
    # Keyed by path: every limited path has a quota of one of its own.
    limit = keyed(Rate(1, 10.0), key=PATH)
    route = Route(route.pattern, limit, match=route.match, methods=route.methods)
    client = serve([route])

    def call(target: str) -> httpx.Response:
        method, _, path = target.rpartition(" ")
        return client.request(method or "GET", path)

    for target in limited:
        assert call(target).status_code != 429, target
        assert call(target).status_code == 429, target
    for target in free:
        for _ in range(2):
            response = call(target)
            assert response.status_code != 429, target
            assert "ratelimit" not in response.headers


def test_several_limits_are_tried_in_order(serve, keyed, subject) -> None:
    per_key = keyed(Rate(3, 30.0), name="per-user", key=header("x-user"))
    route_wide = subject(Rate(5, 10.0), name="route")
    client = serve([Route("/items/*", [per_key, route_wide])], headers_on="all")
    first = client.get("/items/1", headers={"x-user": "a"})
    assert first.headers["ratelimit-policy"] == '"per-user";q=3;w=30, "route";q=5;w=10'
    assert first.headers["ratelimit"] == '"per-user";r=2;t=10, "route";r=4;t=2'
    for _ in range(2):
        assert client.get("/items/1", headers={"x-user": "a"}).status_code == 200
    # "a" is out of its own quota (next unit in 10 s). "route" is asked with
    # cost 0: it still shows in the headers, with 2 units left, and keeps them.
    for _ in range(5):
        denied = client.get("/items/1", headers={"x-user": "a"})
        assert denied.status_code == 429
        assert denied.headers["retry-after"] == "10"
        assert denied.headers["ratelimit"] == '"per-user";r=0;t=30, "route";r=2;t=6'
    ok = client.get("/items/1", headers={"x-user": "b"})
    assert ok.status_code == 200
    assert ok.headers["ratelimit"] == '"per-user";r=2;t=10, "route";r=1;t=8'
    assert client.get("/items/1", headers={"x-user": "c"}).status_code == 200
    # Now "route" is spent, and denies (after "d"'s own limit, listed
    # first, took its unit).
    spent = client.get("/items/1", headers={"x-user": "d"})
    assert spent.status_code == 429
    assert spent.headers["retry-after"] == "2"
    assert spent.headers["ratelimit"] == '"per-user";r=2;t=10, "route";r=0;t=10'
    again = client.get("/items/1", headers={"x-user": "a"})
    assert again.headers["retry-after"] == "10"  # "route", asked at cost 0, admits


def test_a_hammering_key_does_not_drain_the_global_limit(serve, keyed, subject) -> None:
    # The per-key limit first, the global one after it: a key denied by its
    # own limit asks the global one with cost 0 and takes nothing from it.
    per_key = keyed(name="per-key", key=header("x-api-key"))
    global_limit = subject(Rate(5, 60.0), name="global")
    client = serve([Route("/items/*", [per_key, global_limit])])
    abuser = {"x-api-key": "abuser"}
    responses = [client.get("/items/1", headers=abuser) for _ in range(30)]
    assert [response.status_code for response in responses] == [200] * 2 + [429] * 28
    # Headers on the 429s only (the default), with several limits too.
    assert ["ratelimit" in response.headers for response in responses] == (
        [False] * 2 + [True] * 28
    )
    denied = client.get("/items/1", headers=abuser)
    assert denied.headers["retry-after"] == "5"
    assert denied.headers["ratelimit"] == '"per-key";r=0;t=10, "global";r=3;t=24'
    # Another key is still admitted by the global limit: 3 units are left.
    other = {"x-api-key": "other"}
    for _ in range(2):
        assert client.get("/items/1", headers=other).status_code == 200
    third = {"x-api-key": "third"}
    assert client.get("/items/1", headers=third).status_code == 200
    last = client.get("/items/1", headers=third)
    assert last.status_code == 429  # the global limit is spent now
    assert last.headers["retry-after"] == "12"


def test_legacy_and_no_headers(serve, keyed) -> None:
    client = serve([Route("/items/*", keyed())], headers="legacy", headers_on="all")
    response = client.get("/items/1")
    assert "ratelimit" not in response.headers
    assert response.headers["x-ratelimit-limit"] == "2"
    assert response.headers["x-ratelimit-remaining"] == "1"
    assert response.headers["x-ratelimit-reset"] == "5"
    client.get("/items/1")
    denied = client.get("/items/1")
    assert denied.headers["x-ratelimit-remaining"] == "0"
    assert denied.headers["retry-after"] == "5"
    client = serve([Route("/items/*", keyed())], headers="both", headers_on="all")
    both = client.get("/items/1")
    assert both.headers["ratelimit"] == '"default";r=1;t=5'
    assert both.headers["x-ratelimit-remaining"] == "1"
    client = serve([Route("/items/*", keyed())], headers="none", headers_on="all")
    response = client.get("/items/1")
    assert not [name for name in response.headers if "ratelimit" in name]


def test_public_limiters_with_fastapi_add_middleware(clock) -> None:
    app = make_app()
    app.add_middleware(
        RateLimitMiddleware,
        routes=[
            Route("/items/*", Limit(KeyedLimiter("2/10s", clock=clock), key=PATH)),
            Route("/login", Limit(Limiter("1/minute", clock=clock))),
        ],
    )
    with serve_asgi(app) as url, httpx.Client(base_url=url) as client:
        assert [client.get("/items/1").status_code for _ in range(3)] == [200, 200, 429]
        assert client.get("/items/2").status_code == 200  # keyed by path
        assert client.get("/login").status_code == 200
        denied = client.get("/login")
        assert denied.status_code == 429
        assert denied.headers["ratelimit-policy"] == '"default";q=1;w=60'
        assert denied.headers["retry-after"] == "60"


def test_async_limiter_is_awaited_and_lifespan_passes(clock) -> None:
    # An async limiter (AsyncRedisLimiter's shape) wrapping a local one.
    local = KeyedLimiter("1/s", clock=clock)

    class AsyncLimiter:
        rates = local.rates

        async def decide(self, key: object, cost: int = 1) -> Any:
            await asyncio.sleep(0)
            return local.decide(key, cost)  # type: ignore[arg-type]

    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    middleware = RateLimitMiddleware(
        app, [Route("/", Limit(AsyncLimiter()), match="prefix")]
    )

    async def drive() -> list[int]:
        await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=middleware)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t"
        ) as client:
            return [(await client.get("/x")).status_code for _ in range(2)]

    assert asyncio.run(drive()) == [204, 429]
    assert seen == ["lifespan", "http"]


def test_a_constant_start_message_is_not_changed(keyed) -> None:
    # A raw ASGI app may send one module-level start message for every
    # response; the headers added for one request must not stay in it.
    start = {"type": "http.response.start", "status": 200, "headers": [(b"a", b"1")]}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(start)
        await send({"type": "http.response.body", "body": b""})

    middleware = RateLimitMiddleware(
        app, [Route("/", keyed(Rate(5, 10.0)))], headers_on="all"
    )

    async def request() -> list[tuple[bytes, bytes]]:
        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
        await middleware(scope, None, send)  # type: ignore[arg-type]
        return list(sent[0]["headers"])

    for remaining in (4, 3, 2):
        headers = asyncio.run(request())
        assert headers[0] == (b"a", b"1")
        assert [value for name, value in headers if name == b"ratelimit"] == [
            b'"default";r=%d;t=%d' % (remaining, 2 * (5 - remaining))
        ]
    assert start["headers"] == [(b"a", b"1")]
