"""RateLimitWSGIMiddleware on a real Flask app served by a WSGI server
(wsgiref, a thread per connection) on 127.0.0.1, driven by httpx; with the
compiled and the reference cores, on a manual clock."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from flask import Flask

from ratefuse import KeyedLimiter, Rate
from ratefuse.web import PATH, Limit, RateLimitWSGIMiddleware, Route, header, user
from web_support import (
    ManualClock,
    check_headers_go_on_denials_only,
    keyed_limit,
    serve_wsgi,
    subject_limit,
)


def make_app() -> Flask:
    app = Flask(__name__)

    @app.get("/items/<item_id>")
    def item(item_id: str) -> dict[str, str]:
        return {"id": item_id}

    @app.get("/health")
    def health() -> str:
        return "ok"

    @app.route("/login", methods=["GET", "POST"])
    def login() -> str:
        return "login"

    return app


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def keyed(impl: Any, clock: ManualClock) -> Callable[..., Limit]:
    return functools.partial(keyed_limit, impl, clock)


@pytest.fixture
def subject(impl: Any, clock: ManualClock) -> Callable[..., Limit]:
    return functools.partial(subject_limit, impl, clock)


@pytest.fixture
def serve() -> Iterator[Callable[..., httpx.Client]]:
    started: list[Any] = []

    def start(routes: list[Route], app: Any = None, **options: Any) -> httpx.Client:
        wrapped = RateLimitWSGIMiddleware(app or make_app().wsgi_app, routes, **options)
        server = serve_wsgi(wrapped)
        client = httpx.Client(base_url=server.__enter__())
        started.append((server, client))
        return client

    yield start
    for server, client in started:
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
    assert client.get("/items/2", headers=api_key).status_code == 200
    denied = client.get("/items/3", headers=api_key)
    assert denied.status_code == 429
    assert denied.text == "Too Many Requests\n"
    assert denied.headers["retry-after"] == "5"
    assert denied.headers["ratelimit"] == '"default";r=0;t=10'
    clock.advance(4.2)
    assert client.get("/items/4", headers=api_key).headers["retry-after"] == "1"
    clock.advance(0.8)
    assert client.get("/items/5", headers=api_key).status_code == 200


def test_keys_are_isolated(serve, keyed) -> None:
    client = serve([Route("/items/*", keyed(key=header("x-api-key")))])
    for _ in range(2):
        assert client.get("/items/1", headers={"x-api-key": "a"}).status_code == 200
    assert client.get("/items/1", headers={"x-api-key": "a"}).status_code == 429
    assert client.get("/items/1", headers={"x-api-key": "b"}).status_code == 200
    assert [client.get("/items/1").status_code for _ in range(3)] == [200, 200, 429]


def test_user_key_reads_remote_user(serve, keyed) -> None:
    flask_app = make_app().wsgi_app

    def authenticated(environ: dict[str, Any], start_response: Any) -> Any:
        # What an auth layer in front of the limiter does.
        environ["REMOTE_USER"] = environ.get("HTTP_X_USER", "")
        return middleware(environ, start_response)

    middleware = RateLimitWSGIMiddleware(
        flask_app, [Route("/items/*", keyed(key=user()))]
    )
    with serve_wsgi(authenticated) as url, httpx.Client(base_url=url) as client:
        assert [
            client.get("/items/1", headers={"x-user": "u1"}).status_code
            for _ in range(3)
        ] == [200, 200, 429]
        assert client.get("/items/1", headers={"x-user": "u2"}).status_code == 200
        # Anonymous: keyed by address, a quota of its own.
        assert client.get("/items/1").status_code == 200


def test_shadow_exemptions_and_routes(serve, keyed) -> None:
    denied: list[str] = []
    client = serve(
        [
            Route("/login", keyed(), methods=["POST"]),
            Route("/items/", keyed(key=PATH), match="prefix"),
        ],
        shadow=True,
        headers_on="all",
        exempt_paths=["/health"],
        exempt=lambda environ: environ.get("HTTP_X_INTERNAL") == "1",
        on_denied=lambda environ, outcome: denied.append(environ["PATH_INFO"]),
    )
    assert [client.post("/login").status_code for _ in range(3)] == [200] * 3
    assert denied == ["/login"]
    shadowed = client.post("/login")
    assert shadowed.headers["ratelimit"] == '"default";r=0;t=10'
    assert "retry-after" not in shadowed.headers  # a 200 asks for no wait
    assert denied == ["/login"] * 2
    assert "ratelimit" not in client.get("/login").headers  # GET: no route
    assert "ratelimit" not in client.get("/health").headers
    internal = client.get("/items/1", headers={"x-internal": "1"})
    assert "ratelimit" not in internal.headers
    assert client.get("/items/1").headers["ratelimit"] == '"default";r=1;t=5'


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
    # "per-key", listed before the limit that denied, took its unit.
    assert last.headers["ratelimit"] == '"per-key";r=0;t=10, "global";r=0;t=60'


def test_shadow_mode_with_several_limits_sends_no_retry_after(
    serve, keyed, subject
) -> None:
    denials: list[int | None] = []
    client = serve(
        [
            Route(
                "/items/*",
                [
                    keyed(name="per-key", key=header("x-api-key")),
                    subject(Rate(5, 60.0), name="site"),
                ],
            )
        ],
        shadow=True,
        headers="both",
        headers_on="all",
        on_denied=lambda environ, outcome: denials.append(outcome.retry_after),
    )
    responses = [client.get("/items/1", headers={"x-api-key": "a"}) for _ in range(4)]
    assert [response.status_code for response in responses] == [200] * 4
    assert all("retry-after" not in response.headers for response in responses)
    # Shadow mode counts as enforcing would: the denied requests took
    # nothing from "site".
    assert responses[-1].headers["ratelimit"] == '"per-key";r=0;t=10, "site";r=3;t=24'
    assert responses[-1].headers["x-ratelimit-remaining"] == "0"
    assert denials == [5, 5]


def test_legacy_headers(serve, keyed) -> None:
    client = serve([Route("/items/*", keyed())], headers="legacy", headers_on="all")
    response = client.get("/items/1")
    assert response.headers["x-ratelimit-limit"] == "2"
    assert response.headers["x-ratelimit-remaining"] == "1"
    assert response.headers["x-ratelimit-reset"] == "5"
    assert "ratelimit-policy" not in response.headers


def test_concurrent_requests_admit_exactly_the_quota(serve, clock) -> None:
    # 40 requests from 8 threads at one instant: the burst of 10, no more.
    limiter = KeyedLimiter(Rate(10, 60.0), clock=clock)
    client = serve([Route("/items/*", Limit(limiter))])
    statuses: list[int] = []
    lock = threading.Lock()

    def hammer() -> None:
        for _ in range(5):
            status = client.get("/items/1").status_code
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 10 + [429] * 30


def test_async_limiter_is_refused() -> None:
    class AsyncLimiter:
        async def decide(self, key: object, cost: int = 1) -> None:
            return None

    with pytest.raises(TypeError, match="async"):
        RateLimitWSGIMiddleware(
            make_app().wsgi_app, [Route("/", Limit(AsyncLimiter()))]
        )


def test_readme_flask_example(clock) -> None:
    # README "WSGI middleware", with a manual clock.
    from ratefuse import Limiter

    app = Flask(__name__)

    @app.get("/search")
    def search() -> str:
        return "results"

    @app.get("/health")
    def health() -> str:
        return "ok"

    app.wsgi_app = RateLimitWSGIMiddleware(  # type: ignore[method-assign]
        app.wsgi_app,
        routes=[
            Route(
                "/search",
                [
                    Limit(
                        KeyedLimiter("10/s; 1000/h", clock=clock),
                        key=header("x-api-key"),
                        name="per-key",
                    ),
                    Limit(Limiter("500/s", clock=clock), name="site"),
                ],
            ),
        ],
        exempt_paths=["/health"],
    )
    with serve_wsgi(app) as url, httpx.Client(base_url=url) as client:
        key = {"x-api-key": "k1"}
        assert client.get("/search", headers=key).text == "results"
        statuses = [client.get("/search", headers=key).status_code for _ in range(9)]
        assert statuses == [200] * 9
        denied = client.get("/search", headers=key)
        assert denied.status_code == 429
        # The README's 429, header for header.
        assert denied.headers["retry-after"] == "1"
        assert denied.headers["ratelimit-policy"] == (
            '"per-key";q=10;w=1, "per-key-2";q=1000;w=3600, "site";q=500;w=1'
        )
        assert denied.headers["ratelimit"] == '"per-key";r=0;t=36, "site";r=490;t=1'
        assert client.get("/search", headers={"x-api-key": "k2"}).status_code == 200
        assert "ratelimit" not in client.get("/health").headers
