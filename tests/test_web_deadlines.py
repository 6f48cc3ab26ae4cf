"""Deadlines at the edges: the middleware sets ``ratefuse.deadline`` from a
request header (real uvicorn and wsgiref servers, driven by httpx), and the
httpx guard passes the time left on and refuses a request with none."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from ratefuse import DeadlineExceeded, Limiter, Rate, deadline, remaining
from ratefuse.web import (
    GuardedTransport,
    Limit,
    RateLimitMiddleware,
    RateLimitWSGIMiddleware,
    Route,
)
from ratefuse.web.deadlines import parse_timeout
from web_support import ManualClock, serve_asgi, serve_wsgi

HEADER = "x-request-timeout"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2.5", 2.5),
        (" 0 ", 0.0),
        ("2500m", 2.5),
        ("3S", 3.0),
        ("1M", 60.0),
        ("1H", 3600.0),
        ("500u", 0.0005),
        ("7n", 7e-9),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("1e9", None),
        ("soon", None),
        ("123456789m", None),
    ],
)
def test_parse_timeout(text: str, seconds: float | None) -> None:
    parsed = parse_timeout(text)
    if seconds is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert math.isclose(parsed, seconds)


def a_limit() -> Limit:
    return Limit(Limiter("1000/s"), rates=[Rate(1000, 1.0)])


def the_budget() -> dict[str, Any]:
    # What the app sees, and what acquire does under it: one unit every
    # 10 s, the first one taken, so the second cannot fit any budget here.
    clock = ManualClock()
    limiter = Limiter(Rate(1, 10.0, 1), clock=clock, sleep=clock.sleep)
    limiter.acquire()
    try:
        limiter.acquire()
        outcome = "waited"
    except DeadlineExceeded:
        outcome = "deadline"
    except Exception as exc:
        outcome = type(exc).__name__
    return {"remaining": remaining(), "acquire": outcome}


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    body = json.dumps(the_budget()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: Any, start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(the_budget()).encode()]


def check_budgets(base: str) -> None:
    # Bounds only from above: a loaded machine may take a while to answer.
    with httpx.Client(base_url=base) as client:
        seen = client.get("/", headers={HEADER: "2.5"}).json()
        assert 0.0 <= seen["remaining"] <= 2.5
        assert seen["acquire"] == "deadline"
        seen = client.get("/", headers={HEADER: "250m"}).json()
        assert 0.0 <= seen["remaining"] <= 0.25
        seen = client.get("/", headers={HEADER: "whenever"}).json()
        assert seen == {"remaining": None, "acquire": "waited"}
        seen = client.get("/").json()
        assert seen["remaining"] is None


def test_the_asgi_middleware_runs_the_app_under_the_requests_deadline() -> None:
    app = RateLimitMiddleware(asgi_app, [Route("/", [a_limit()])], deadline_from=HEADER)
    with serve_asgi(app) as base:
        check_budgets(base)


def test_the_wsgi_middleware_runs_the_app_under_the_requests_deadline() -> None:
    app = RateLimitWSGIMiddleware(
        wsgi_app, [Route("/", [a_limit()])], deadline_from=HEADER
    )
    with serve_wsgi(app) as base:
        check_budgets(base)


def test_a_function_can_read_the_deadline_and_it_is_off_by_default() -> None:
    app = RateLimitMiddleware(
        asgi_app, [Route("/", [a_limit()])], deadline_from=lambda scope: 1.5
    )
    plain = RateLimitMiddleware(asgi_app, [Route("/", [a_limit()])])
    with serve_asgi(app) as base, serve_asgi(plain) as plain_base:
        assert 0.0 <= httpx.get(base + "/").json()["remaining"] <= 1.5
        seen = httpx.get(plain_base + "/", headers={HEADER: "2"}).json()
        assert seen["remaining"] is None
    with pytest.raises(ValueError, match="deadline_from"):
        RateLimitMiddleware(asgi_app, [], deadline_from=3)  # type: ignore[arg-type]


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    headers = dict(scope["headers"])
    body = headers.get(HEADER.encode(), b"none")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


def test_the_httpx_guard_passes_the_time_left_on_and_cuts_its_timeouts() -> None:
    seen: list[dict[str, Any]] = []

    def inspect(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.extensions["timeout"]))
        return httpx.Response(200)

    with serve_asgi(echo_app) as base:
        guarded = GuardedTransport(deadline_header=HEADER)
        with httpx.Client(transport=guarded, base_url=base) as client:
            assert client.get("/").text == "none"
            with deadline(5.0):
                assert 0.0 < float(client.get("/").text) <= 5.0
            clock = ManualClock()
            with deadline(0.0, clock=clock), pytest.raises(DeadlineExceeded):
                client.get("/")
    mocked = GuardedTransport(httpx.MockTransport(inspect))
    with httpx.Client(transport=mocked, timeout=30.0) as client, deadline(2.0):
        client.get("http://upstream.invalid/")
    assert all(0 < value <= 2.0 for value in seen[0].values())
