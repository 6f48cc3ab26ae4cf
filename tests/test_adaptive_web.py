"""Adaptive concurrency in the web integrations, on real servers: a
route's ``concurrency`` in the ASGI (uvicorn) and WSGI (wsgiref) middleware,
and the httpx transports' ``concurrency`` option against a real uvicorn
upstream. A request is held in its handler by an event the test sets."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from ratefuse import (
    AdaptiveLimiter,
    AdaptiveLimitFullError,
    BreakerConfig,
    BreakerState,
)
from ratefuse.adaptive import AIMD
from ratefuse.throttle import ThrottleConfig
from ratefuse.web import RateLimitMiddleware, RateLimitWSGIMiddleware, Route
from ratefuse.web.client import AsyncGuardedTransport, GuardedTransport
from web_support import serve_asgi, serve_wsgi

WAIT = 10.0


class Gate:
    """`Gate` holds requests in their handler until opened."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.open = threading.Event()


def limiter(size: int = 1) -> AdaptiveLimiter:
    return AdaptiveLimiter(AIMD(initial_limit=size, min_limit=1, max_limit=size))


def asgi_app(gate: Gate) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        status = 200
        if scope["path"] == "/slow":
            gate.entered.set()
            await asyncio.get_running_loop().run_in_executor(None, gate.open.wait, WAIT)
        elif scope["path"] == "/fail":
            status = 500
        elif scope["path"] == "/raise":
            raise RuntimeError("handler failed")
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def wsgi_app(gate: Gate) -> Any:
    def app(environ: Any, start_response: Any) -> Any:
        path = environ["PATH_INFO"]
        if path == "/slow":
            gate.entered.set()
            gate.open.wait(WAIT)
        start_response("500 Internal Server Error" if path == "/fail" else "200 OK", [])
        return [b"ok"]

    return app


@pytest.fixture
def gate() -> Iterator[Gate]:
    gate = Gate()
    yield gate
    gate.open.set()


@pytest.mark.parametrize("side", ["asgi", "wsgi"])
def test_a_route_runs_under_its_adaptive_limit(gate: Gate, side: str) -> None:
    guard = limiter()
    routes = [Route("/slow", concurrency=guard), Route("/fail", concurrency=guard)]
    if side == "asgi":
        server = serve_asgi(RateLimitMiddleware(asgi_app(gate), routes))
    else:
        server = serve_wsgi(RateLimitWSGIMiddleware(wsgi_app(gate), routes))
    with server as url, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(httpx.get, f"{url}/slow", timeout=WAIT)
        assert gate.entered.wait(WAIT)
        assert guard.in_flight == 1
        refused = httpx.get(f"{url}/fail", timeout=WAIT)
        assert refused.status_code == 503
        assert refused.text == "Service Unavailable\n"
        # Not under the limit: no route matches.
        assert httpx.get(f"{url}/free", timeout=WAIT).status_code == 200
        gate.open.set()
        assert slow.result(WAIT).status_code == 200
        assert httpx.get(f"{url}/fail", timeout=WAIT).status_code == 500
    stats = guard.stats()
    assert (stats.in_flight, stats.samples, stats.drops, stats.rejected) == (0, 2, 1, 1)


def test_an_asgi_exception_is_a_drop(gate: Gate) -> None:
    guard = limiter(4)
    app = RateLimitMiddleware(asgi_app(gate), [Route("/raise", concurrency=guard)])
    with serve_asgi(app) as url:
        assert httpx.get(f"{url}/raise", timeout=WAIT).status_code == 500
    assert (guard.in_flight, guard.core.drops) == (0, 1)


def test_route_concurrency_must_be_an_adaptive_limiter() -> None:
    with pytest.raises(TypeError, match="concurrency must be an AdaptiveLimiter"):
        Route("/x", concurrency=object())  # type: ignore[arg-type]


def test_the_sync_transport_sends_under_the_limit(gate: Gate) -> None:
    guard = limiter()
    with serve_asgi(asgi_app(gate)) as url, ThreadPoolExecutor(1) as pool:
        # A breaker that one failure opens: the local refusal is not one.
        transport = GuardedTransport(
            concurrency=guard,
            breaker=BreakerConfig(minimum_calls=1, window_size=1),
        )
        client = httpx.Client(transport=transport)
        slow = pool.submit(client.get, f"{url}/slow", timeout=WAIT)
        assert gate.entered.wait(WAIT)
        with pytest.raises(AdaptiveLimitFullError):
            client.get(f"{url}/fail", timeout=WAIT)
        (breaker,) = transport.breakers.values()
        assert breaker.state == BreakerState.CLOSED
        gate.open.set()
        assert slow.result(WAIT).status_code == 200
        assert client.get(f"{url}/fail", timeout=WAIT).status_code == 500
        client.close()
    assert (guard.in_flight, guard.core.samples, guard.core.drops) == (0, 2, 1)


def test_the_async_transport_keeps_one_limit_per_host(gate: Gate) -> None:
    made: dict[str, AdaptiveLimiter] = {}

    def per_host(host: str) -> AdaptiveLimiter:
        return made.setdefault(host, limiter(2))

    async def main(url: str) -> None:
        transport = AsyncGuardedTransport(concurrency=per_host)
        async with httpx.AsyncClient(transport=transport) as client:
            assert (await client.get(f"{url}/ok", timeout=WAIT)).status_code == 200
            assert (await client.get(f"{url}/fail", timeout=WAIT)).status_code == 500

    with serve_asgi(asgi_app(gate)) as url:
        asyncio.run(main(url))
    (guard,) = made.values()
    assert (guard.in_flight, guard.core.samples, guard.core.drops) == (0, 2, 1)


def test_a_full_limit_is_no_outcome_for_the_throttle_or_a_probe(gate: Gate) -> None:
    # The slot is taken after the throttle and the breaker let the request
    # go, and refused before anything is sent: the throttle counts no
    # request and a HALF_OPEN probe's permit goes back unused.
    guard = limiter()
    with serve_asgi(asgi_app(gate)) as url, ThreadPoolExecutor(1) as pool:
        transport = GuardedTransport(
            concurrency=guard,
            breaker=BreakerConfig(minimum_calls=1, window_size=1, half_open_calls=1),
            throttle=ThrottleConfig(),
        )
        client = httpx.Client(transport=transport)
        slow = pool.submit(client.get, f"{url}/slow", timeout=WAIT)
        assert gate.entered.wait(WAIT)
        (breaker,) = transport.breakers.values()
        breaker.transition_to(BreakerState.OPEN)
        breaker.transition_to(BreakerState.HALF_OPEN)
        with pytest.raises(AdaptiveLimitFullError):
            client.get(f"{url}/ok", timeout=WAIT)
        (throttle,) = transport.throttles.values()
        assert throttle.stats().requests == 0
        gate.open.set()
        assert slow.result(WAIT).status_code == 200
        # The probe's one slot is free: the next request is the probe.
        assert client.get(f"{url}/ok", timeout=WAIT).status_code == 200
        assert breaker.state == BreakerState.CLOSED
        client.close()
    assert guard.in_flight == 0


def test_a_raising_failure_test_gives_back_the_slot_and_the_permit(gate: Gate) -> None:
    guard = limiter()

    def broken(response: httpx.Response) -> bool:
        raise ValueError("broken failure test")

    with serve_asgi(asgi_app(gate)) as url:
        transport = GuardedTransport(
            concurrency=guard,
            breaker=BreakerConfig(half_open_calls=1),
            is_failure=broken,
        )
        client = httpx.Client(transport=transport)
        with pytest.raises(ValueError, match="broken failure test"):
            client.get(f"{url}/ok", timeout=WAIT)
        (breaker,) = transport.breakers.values()
        breaker.transition_to(BreakerState.OPEN)
        breaker.transition_to(BreakerState.HALF_OPEN)
        with pytest.raises(ValueError, match="broken failure test"):
            client.get(f"{url}/ok", timeout=WAIT)
        # The probe permit went back: another probe is let through.
        with pytest.raises(ValueError, match="broken failure test"):
            client.get(f"{url}/ok", timeout=WAIT)
        client.close()
    assert guard.in_flight == 0
