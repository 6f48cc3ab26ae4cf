"""GuardedTransport and AsyncGuardedTransport against real local upstreams
(uvicorn on 127.0.0.1) that answer, fail with 5xx, hang past the client's
timeout, or do not listen at all; limiters and breakers of the `impl`
fixture's cores, on a manual clock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from ratefuse import (
    BreakerConfig,
    BreakerState,
    CircuitOpenError,
    Rate,
    RateLimitExceeded,
)
from ratefuse.rates import build_specs
from ratefuse.web import AsyncGuardedTransport, GuardedTransport
from ratefuse.web.client import upstream_of
from web_support import ManualClock, serve_asgi

TRIP_AFTER_TWO = BreakerConfig(
    window_size=2,
    minimum_calls=2,
    failure_rate_threshold=100,
    wait_duration=30.0,
    half_open_calls=1,
)
# Requests that answer get seconds (a loaded machine can take a while);
# only those to /hang time out, after 50 ms.
TIMEOUT = httpx.Timeout(5.0)
HANG_TIMEOUT = httpx.Timeout(5.0, read=0.05)


class Upstream:
    """`Upstream` is a tiny ASGI server: /ok 200, /fail 503, /missing 404,
    /hang never answers until the test ends; ``hits`` counts requests."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.stopping = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        self.hits.append(path)
        while path == "/hang" and not self.stopping:
            await asyncio.sleep(0.005)
        status = {"/ok": 200, "/fail": 503, "/missing": 404}.get(path, 200)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": path.encode()})


@pytest.fixture
def upstreams() -> Iterator[list[tuple[Upstream, str]]]:
    """Two upstream hosts (two ports) with their base URLs."""
    apps = [Upstream(), Upstream()]
    servers = [serve_asgi(app) for app in apps]
    urls = [server.__enter__() for server in servers]
    yield list(zip(apps, urls, strict=True))
    for app, server in zip(apps, servers, strict=True):
        app.stopping = True
        server.__exit__(None, None, None)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def breakers(impl: Any, clock: ManualClock) -> Callable[[str], Any]:
    breaker_core = impl.module("engine._breaker").BreakerCore
    return lambda host: breaker_core(host, TRIP_AFTER_TWO, clock=clock)


@pytest.fixture
def keyed(impl: Any, clock: ManualClock) -> Callable[[Rate], Any]:
    def make(rate: Rate) -> Any:
        return impl.module("engine._keyed").KeyedLimiterCore(
            build_specs([rate], "gcra"),
            1000,
            clock,
            max_wait=None,
            sleep=clock.sleep,
            async_sleep=clock.async_sleep,
        )

    return make


def test_5xx_opens_the_hosts_breaker_and_no_other(upstreams, breakers, clock) -> None:
    (app, url), (other_app, other_url) = upstreams
    transport = GuardedTransport(breaker=breakers)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        assert client.get(f"{url}/missing").status_code == 404  # 4xx: a success
        assert client.get(f"{url}/fail").status_code == 503
        assert client.get(f"{url}/fail").status_code == 503  # window: 1 of 2 failed
        with pytest.raises(CircuitOpenError) as raised:
            client.get(f"{url}/ok")
        assert raised.value.retry_after == 30.0
        assert app.hits == ["/missing", "/fail", "/fail"]  # rejected before sending
        assert client.get(f"{other_url}/ok").status_code == 200
        host = upstream_of(httpx.Request("GET", url))
        assert set(transport.breakers) == {
            host,
            upstream_of(httpx.Request("GET", other_url)),
        }
        assert transport.breakers[host].state == BreakerState.OPEN
        # After the wait a probe goes through, and its success closes it.
        clock.advance(30.0)
        assert client.get(f"{url}/ok").status_code == 200
        assert transport.breakers[host].state == BreakerState.CLOSED
    assert other_app.hits == ["/ok"]


def test_timeouts_and_connection_errors_count_as_failures(upstreams, breakers) -> None:
    (app, url), _ = upstreams
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_url = f"http://127.0.0.1:{unused.getsockname()[1]}"
    transport = GuardedTransport(breaker=breakers)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        for _ in range(2):
            with pytest.raises(httpx.ReadTimeout):
                client.get(f"{url}/hang", timeout=HANG_TIMEOUT)
        with pytest.raises(CircuitOpenError):
            client.get(f"{url}/ok")
        for _ in range(2):
            with pytest.raises(httpx.ConnectError):
                client.get(f"{closed_url}/ok")
        with pytest.raises(CircuitOpenError):
            client.get(f"{closed_url}/ok")
    assert app.hits == ["/hang", "/hang"]


def test_limiter_denial_raises_at_once_per_host(upstreams, keyed, breakers) -> None:
    (app, url), (_, other_url) = upstreams
    transport = GuardedTransport(limiter=keyed(Rate(2, 10.0)), breaker=breakers)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        assert [client.get(f"{url}/ok").status_code for _ in range(2)] == [200, 200]
        with pytest.raises(RateLimitExceeded) as raised:
            client.get(f"{url}/ok")
        assert raised.value.retry_after == 5.0
        assert client.get(f"{other_url}/ok").status_code == 200
        # The denied request released its breaker permit: nothing recorded.
        breaker = transport.breakers[upstream_of(httpx.Request("GET", url))]
        assert breaker.counts()[2] == 2  # calls in the window: the two sent
    assert app.hits == ["/ok", "/ok"]


def test_limiter_waits_up_to_max_wait(upstreams, keyed, clock) -> None:
    (app, url), _ = upstreams
    transport = GuardedTransport(limiter=keyed(Rate(1, 5.0)), max_wait=6.0)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        started = clock.now_ns
        assert client.get(f"{url}/ok").status_code == 200
        assert client.get(f"{url}/ok").status_code == 200  # waited its 5 s turn
        assert clock.now_ns - started == 5_000_000_000
    short = GuardedTransport(limiter=keyed(Rate(1, 10.0)), max_wait=1.0)
    with httpx.Client(transport=short, timeout=TIMEOUT) as client:
        client.get(f"{url}/ok")
        before = clock.now_ns
        with pytest.raises(RateLimitExceeded):
            client.get(f"{url}/ok")  # the turn is 10 s away: no waiting at all
        assert clock.now_ns == before
    assert app.hits == ["/ok"] * 3


def test_custom_failure_test(upstreams, breakers) -> None:
    (_, url), _ = upstreams
    transport = GuardedTransport(
        breaker=breakers, is_failure=lambda response: response.status_code == 404
    )
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        for _ in range(3):
            assert client.get(f"{url}/fail").status_code == 503
        client.get(f"{url}/missing")
        client.get(f"{url}/missing")
        with pytest.raises(CircuitOpenError):
            client.get(f"{url}/ok")


def test_a_raising_failure_test_releases_the_permit(upstreams, breakers, clock) -> None:
    # In HALF_OPEN the breaker lets one probe through; a failure test that
    # raises must give that probe slot back, or the host stays cut off.
    (_, url), _ = upstreams
    failing_test = True

    def is_failure(response: httpx.Response) -> bool:
        if failing_test:
            raise RuntimeError("cannot judge")
        return response.status_code >= 500

    transport = GuardedTransport(breaker=breakers, is_failure=is_failure)
    with httpx.Client(transport=transport, timeout=TIMEOUT) as client:
        failing_test = False
        for _ in range(2):
            assert client.get(f"{url}/fail").status_code == 503
        clock.advance(30.0)  # OPEN -> HALF_OPEN: one probe at a time
        failing_test = True
        for _ in range(2):
            with pytest.raises(RuntimeError, match="cannot judge"):
                client.get(f"{url}/ok")
        failing_test = False
        assert client.get(f"{url}/ok").status_code == 200
        host = upstream_of(httpx.Request("GET", url))
        assert transport.breakers[host].state == BreakerState.CLOSED


def test_async_transport(upstreams, keyed, breakers, clock) -> None:
    (app, url), (_, other_url) = upstreams

    async def drive() -> None:
        transport = AsyncGuardedTransport(
            limiter=keyed(Rate(3, 30.0)), breaker=breakers, max_wait=10.0
        )
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
            assert (await client.get(f"{url}/fail")).status_code == 503
            with pytest.raises(httpx.ReadTimeout):
                await client.get(f"{url}/hang", timeout=HANG_TIMEOUT)
            with pytest.raises(CircuitOpenError):
                await client.get(f"{url}/ok")
            before = clock.now_ns
            assert (await client.get(f"{other_url}/ok")).status_code == 200
            assert (await client.get(f"{other_url}/ok")).status_code == 200
            assert clock.now_ns == before
            # The third unit of other_url's quota is there; the fourth waits 10 s.
            assert (await client.get(f"{other_url}/ok")).status_code == 200
            assert (await client.get(f"{other_url}/ok")).status_code == 200
            assert clock.now_ns - before == 10_000_000_000
            assert (await client.get(f"{other_url}/ok")).status_code == 200
            assert clock.now_ns - before == 20_000_000_000

    asyncio.run(drive())
    assert app.hits == ["/fail", "/hang"]


def test_async_cancellation_records_nothing(upstreams, breakers) -> None:
    (app, url), _ = upstreams

    async def drive() -> Any:
        transport = AsyncGuardedTransport(breaker=breakers)
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT) as client:
            task = asyncio.ensure_future(
                client.get(f"{url}/hang", timeout=HANG_TIMEOUT)
            )
            # Cancel once the request is in flight (the upstream has it),
            # not after a guessed delay: a task cancelled before it sent
            # anything would pass this test without testing anything.
            for _ in range(5_000):
                if app.hits:
                    break
                await asyncio.sleep(0.001)
            assert app.hits == ["/hang"]
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return transport.breakers[upstream_of(httpx.Request("GET", url))]

    breaker = asyncio.run(drive())
    assert breaker.counts()[2] == 0


class AsyncDecide:
    """A limiter shaped like AsyncRedisLimiter (an awaited decide)."""

    async def decide(self, key: object, cost: int = 1) -> None:
        return None


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"limiter": object()}, TypeError, "limiter must have a decide method"),
        ({"limiter": AsyncDecide()}, TypeError, "limiter must decide synchronously"),
        ({"max_wait": 1.0}, ValueError, "max_wait needs a limiter that can wait"),
        ({"max_wait": -1.0}, ValueError, "max_wait must be finite and >= 0, got -1.0"),
        ({"max_wait": float("inf")}, ValueError, "max_wait must be finite"),
        (
            {"max_wait": "1"},
            ValueError,
            "max_wait must be a number of seconds, got '1'",
        ),
        ({"breaker": 3}, ValueError, "breaker must be a BreakerConfig, a factory"),
        ({"is_failure": 500}, ValueError, "is_failure must be callable, got 500"),
    ],
)
def test_bad_arguments_are_refused(options, error, match) -> None:
    for transport_type in (GuardedTransport, AsyncGuardedTransport):
        with pytest.raises(error, match=match):
            transport_type(**options)


def test_readme_transport_example(upstreams, clock) -> None:
    # README "HTTP client guard", against a local upstream, manual clock.
    from ratefuse import CircuitBreaker, KeyedLimiter

    (app, url), _ = upstreams
    config = BreakerConfig(failure_rate_threshold=50, minimum_calls=10)
    transport = GuardedTransport(
        limiter=KeyedLimiter("20/s", clock=clock, sleep=clock.sleep),
        breaker=lambda host: CircuitBreaker(host, config, clock=clock),
        max_wait=0.5,
    )
    with httpx.Client(transport=transport, timeout=2.0) as client:
        for _ in range(21):
            client.get(f"{url}/ok")  # the 21st waits its 50 ms turn
        assert clock.now_ns - ManualClock().now_ns == 50_000_000
        failures = 0
        while failures < 100:
            try:
                response = client.get(f"{url}/fail")
            except CircuitOpenError:
                break
            assert response.status_code == 503
            failures += 1
    # The default window holds the last 100 calls: 21 of 42 failed is 50%.
    assert failures == 21
    assert len(app.hits) == 42
