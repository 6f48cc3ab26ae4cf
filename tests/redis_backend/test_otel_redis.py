"""ratefuse.otel with Redis: a Redis limiter's and backend's counters are
reported as the Prometheus collector reports them, and a fleet breaker's
rejection adds its span event."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
from fleet_breaker_support import (
    FleetClock,
    fail,
    flush_all,
    fresh_fleet_name,
    make_breaker,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from ratefuse import CircuitOpenError
from ratefuse.breaker import BreakerConfig, State
from ratefuse.metrics import RatefuseCollector
from ratefuse.otel import (
    BREAKER_REJECTED,
    RatefuseInstruments,
    instrument,
    uninstrument,
)
from ratefuse.redis import RedisBackend, RedisLimiter


@pytest.fixture
def traced() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument()
    yield provider, exporter
    uninstrument()
    provider.shutdown()


def test_redis_counters_match_the_prometheus_collector(
    node_backend: RedisBackend, fresh_name: Callable[[], str]
) -> None:
    limiter = RedisLimiter("2/h", backend=node_backend, name=fresh_name())
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = RatefuseInstruments(meter_provider=provider)
    collector = RatefuseCollector()
    for exporter in (instruments, collector):
        exporter.add_limiter("remote", limiter)
        exporter.add_backend("main", node_backend)
    assert [limiter.try_acquire("k") for _ in range(3)] == [True, True, False]
    otel: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    labels = tuple(
                        sorted((k, str(v)) for k, v in point.attributes.items())
                    )
                    otel[(metric.name.replace(".", "_"), labels)] = point.value
    prometheus = {
        (family.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }
    # The backend's counters move with every scrape's neighbours (other
    # tests share it): compare the limiter's, and the backend's names.
    limiter_rows = {
        key: value for key, value in otel.items() if ("limiter", "remote") in key[1]
    }
    assert limiter_rows == {
        key: value
        for key, value in prometheus.items()
        if ("limiter", "remote") in key[1]
    }
    assert (
        limiter_rows[("ratefuse_redis_limiter_decisions", (("limiter", "remote"),))]
        == 3
    )
    assert {key for key in otel if ("backend", "main") in key[1]} == {
        key for key in prometheus if ("backend", "main") in key[1]
    }
    provider.shutdown()
    limiter.close()


def test_a_fleet_breaker_rejection_adds_a_span_event(
    client: redis.Redis, traced: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = traced
    config = BreakerConfig(window_size=10, minimum_calls=6, wait_duration=10.0)
    breaker = make_breaker(client, fresh_fleet_name(), config, FleetClock())
    try:
        fail(breaker, 6)
        flush_all([breaker])
        assert breaker.state == State.OPEN
        tracer = provider.get_tracer("test")
        with (
            tracer.start_as_current_span("call"),
            pytest.raises(CircuitOpenError),
            breaker.guard(),
        ):
            pass
        (span,) = exporter.get_finished_spans()
        (event,) = span.events
        assert event.name == BREAKER_REJECTED
        assert event.attributes["ratefuse.breaker"] == breaker.name
        assert event.attributes["ratefuse.retry_after"] == pytest.approx(10.0)
    finally:
        breaker.close()
