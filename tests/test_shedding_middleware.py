"""The middlewares read a request's priority (a Route's ``priority=``)
for a PriorityLimiter: real servers (uvicorn for ASGI, wsgiref for WSGI)
driven by httpx, on both cores and a manual clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from ratefuse import Rate
from ratefuse.rates import build_specs
from ratefuse.shedding import PriorityLimiter
from ratefuse.web import (
    KeyFunction,
    Limit,
    RateLimitMiddleware,
    RateLimitWSGIMiddleware,
    Route,
)
from web_support import ManualClock, serve_asgi, serve_wsgi

TEN_PER_10S = Rate(10, 10.0)  # one unit a second, burst 10


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def wsgi_app(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def priority_limit(impl: Any, clock: ManualClock) -> tuple[Limit, PriorityLimiter]:
    core = impl.module("engine._subject").LimiterCore(
        build_specs([TEN_PER_10S], "gcra"), clock
    )
    limiter = PriorityLimiter(core)
    return Limit(limiter, rates=[TEN_PER_10S]), limiter


@pytest.fixture(params=["asgi", "wsgi"])
def side(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def served(
    impl: Any, side: str, request: pytest.FixtureRequest
) -> Iterator[tuple[httpx.Client, PriorityLimiter, ManualClock]]:
    clock = ManualClock()
    limit, limiter = priority_limit(impl, clock)
    priority = getattr(request, "param", "x-priority")
    routes = [Route("/api/*", limit, priority=priority)]
    if side == "asgi":
        server = serve_asgi(RateLimitMiddleware(asgi_app, routes))
    else:
        server = serve_wsgi(RateLimitWSGIMiddleware(wsgi_app, routes))
    with server as url, httpx.Client(base_url=url) as client:
        yield client, limiter, clock


def statuses(client: httpx.Client, count: int, priority: str | None) -> list[int]:
    headers = {} if priority is None else {"x-priority": priority}
    return [client.get("/api/work", headers=headers).status_code for _ in range(count)]


def test_sheddable_requests_are_refused_first(served) -> None:
    client, limiter, _ = served
    assert statuses(client, 6, "sheddable") == [200] * 5 + [429]
    assert statuses(client, 4, None) == [200] * 3 + [429]  # no header: default
    assert statuses(client, 3, "critical") == [200, 200, 429]
    assert limiter.stats().admitted == (5, 3, 2)


def test_a_shed_request_gets_its_own_retry_after(served) -> None:
    client, _, clock = served
    assert statuses(client, 5, "critical") == [200] * 5
    # 5 of 10 left: sheddable is refused until one more unit refills.
    denied = client.get("/api/work", headers={"x-priority": "sheddable"})
    assert denied.status_code == 429
    assert denied.headers["retry-after"] == "1"
    clock.advance(1.0)
    assert statuses(client, 1, "sheddable") == [200]


by_path = KeyFunction(
    "by_path",
    lambda scope: "critical" if scope["path"].endswith("/pay") else "sheddable",
    lambda environ: (
        "critical" if environ["PATH_INFO"].endswith("/pay") else "sheddable"
    ),
)


@pytest.mark.parametrize("served", [by_path], indirect=True)
def test_a_key_function_reads_the_priority(served) -> None:
    client, limiter, _ = served
    assert [client.get("/api/browse").status_code for _ in range(6)] == [200] * 5 + [
        429
    ]
    assert [client.get("/api/pay").status_code for _ in range(5)] == [200] * 5
    assert limiter.stats().admitted == (5, 0, 5)


def test_a_bad_priority_option_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="priority must be a header name"):
        Route("/x", priority=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="header name must be a non-empty"):
        Route("/x", priority="")
