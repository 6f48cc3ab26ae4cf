"""The backend breaker trips on a failure rate over a short time window
(issue 21, item 12): however busy Redis was before it stopped answering, a
caller pays about one window of timeouts (5 at the default timeout), not
the 10 in a row a 20-call window full of successes needed. Real paused
server, real timeouts; the breaker's clock is injected and moved by one
timeout per call, as the wall clock moves."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from breaker_support import ManualClock, breaker_class
from ratefuse.breaker import State
from ratefuse.core.backend_defaults import DEFAULT_TIMEOUT
from ratefuse.redis import DEFAULT_BREAKER_CONFIG, RedisBackend, RedisLimiter
from ratefuse.redis._connection import default_breaker_config


@pytest.fixture
def node_client(disposable_redis) -> Iterator[redis.Redis]:
    connection = redis.Redis(host="127.0.0.1", port=disposable_redis.port)
    yield connection
    connection.close()


def test_the_default_rules_are_a_short_time_window() -> None:
    config = DEFAULT_BREAKER_CONFIG
    assert config == default_breaker_config(DEFAULT_TIMEOUT)
    assert config.window_type == "time"
    assert config.window_duration == pytest.approx(0.5)
    # A longer timeout widens the window, so a lone caller still sees
    # enough calls in it to trip.
    slow = default_breaker_config(1.0)
    assert slow.window_duration == pytest.approx(5.0)
    assert slow.window_duration / slow.window_buckets == pytest.approx(1.0)
    assert RedisBackend.__init__  # the backend builds it for its timeout


def test_a_backend_builds_its_breaker_for_its_timeout(client) -> None:
    backend = RedisBackend(client, timeout=0.4)
    try:
        assert backend.breaker.config == default_breaker_config(0.4)
    finally:
        backend.close()


@pytest.mark.parametrize("history", [0, 500])
def test_a_busy_redis_that_stops_answering_costs_about_one_window(
    impl, disposable_redis, node_client, history: int
) -> None:
    clock = ManualClock(1_000_000_000)
    breaker = breaker_class(impl)("redis", DEFAULT_BREAKER_CONFIG, clock=clock)
    backend = RedisBackend(node_client, timeout=DEFAULT_TIMEOUT, breaker=breaker)
    limiter = RedisLimiter(
        "1000000/h", backend=backend, name="window", on_backend_error="allow"
    )
    try:
        # A busy Redis: ``history`` successes within the last window.
        for index in range(history):
            assert limiter.decide(index % 50).allowed
        limiter.decide("warm")
        disposable_redis.pause()
        try:
            paid = 0
            while breaker.state is not State.OPEN:
                limiter.decide("k")
                paid = backend.stats().timeouts
                clock.advance(DEFAULT_TIMEOUT)
                assert paid <= 20, "the breaker never opened"
        finally:
            disposable_redis.resume()
        # About one window of timeouts, and never the 10 of a call window.
        window = DEFAULT_BREAKER_CONFIG.window_duration / DEFAULT_TIMEOUT
        assert paid <= window + 1
        assert paid < 10
        # Open: no I/O at all.
        for _ in range(50):
            limiter.decide("k")
        assert backend.stats().timeouts == paid
        assert backend.stats().breaker_rejections == 50
    finally:
        backend.close()
