"""ratefuse.otel: the counters as observable instruments, read back with
the SDK's InMemoryMetricReader and compared with the Prometheus
collector's reading of the same objects; span events of refused calls,
read back with the SDK's InMemorySpanExporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)

from breaker_support import Boom, ManualClock, make_breaker
from ratefuse import AdaptiveLimiter, CircuitOpenError, Limiter, RateLimitExceeded
from ratefuse.adaptive import AIMD
from ratefuse.breaker import BreakerConfig
from ratefuse.config import Registry
from ratefuse.core.span_hooks import ON_DENIED, ON_REJECTED, SPAN_HOOKS
from ratefuse.metrics import RatefuseCollector
from ratefuse.otel import (
    BREAKER_REJECTED,
    LIMIT_DENIED,
    RatefuseInstruments,
    instrument,
    uninstrument,
)
from ratefuse.redis import LimiterStats

Reading = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def registry() -> Registry:
    return Registry(
        {
            "limiters": {
                "api": {"rate": "2/s"},
                "users": {"rate": "1/s", "keyed": True, "max_keys": 2},
            },
            "breakers": {"db": {"minimum_calls": 1, "window_size": 1}},
        },
        clock=lambda: 0,
    )


def read_otel(reader: InMemoryMetricReader) -> Reading:
    """`read_otel` collects once into {(prometheus-style name, attributes):
    value}."""
    data = reader.get_metrics_data()
    found: Reading = {}
    if data is None:  # nothing observed
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                name = metric.name.replace(".", "_")
                for point in metric.data.data_points:
                    labels = tuple(
                        sorted((k, str(v)) for k, v in point.attributes.items())
                    )
                    found[(name, labels)] = point.value
    return found


def read_prometheus(collector: RatefuseCollector) -> Reading:
    return {
        (family.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in collector.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def exercise(registry: Registry) -> None:
    api, users, db = (
        registry.limiter("api"),
        registry.limiter("users"),
        registry.breaker("db"),
    )
    for _ in range(3):
        api.try_acquire()
    for key in ("a", "b", "c", "a"):
        users.try_acquire(key)
    permit = db.try_acquire()
    assert permit is not None
    permit.on_error(0.0, Boom())
    assert db.try_acquire() is None


def test_instruments_report_what_the_prometheus_collector_reports(
    registry: Registry,
) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = RatefuseInstruments(registry, meter_provider=provider)
    instruments.add_limiter("extra", Limiter("1/s", clock=lambda: 0))
    collector = RatefuseCollector(registry)
    collector.add_limiter("extra", Limiter("1/s", clock=lambda: 0))
    exercise(registry)
    otel, prometheus = read_otel(reader), read_prometheus(collector)
    assert otel == prometheus
    assert (
        otel[
            ("ratefuse_limiter_decisions", (("decision", "denied"), ("limiter", "api")))
        ]
        == 1
    )
    assert otel[("ratefuse_breaker_state", (("breaker", "db"), ("state", "OPEN")))] == 1
    assert (
        otel[("ratefuse_breaker_calls", (("breaker", "db"), ("result", "rejected")))]
        == 1
    )
    assert otel[("ratefuse_limiter_evictions", (("limiter", "users"),))] >= 1
    # Counters are cumulative and monotonic, the state a gauge.
    kinds = {
        metric.name: type(metric.data).__name__
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert kinds["ratefuse.limiter.decisions"] == "Sum"
    assert kinds["ratefuse.breaker.state"] == "Gauge"
    assert kinds["ratefuse.limiter.keys"] == "Gauge"
    provider.shutdown()


def test_adaptive_limits_are_reported_as_prometheus_reports_them() -> None:
    limiter = AdaptiveLimiter(AIMD(initial_limit=4, min_limit=2), clock=lambda: 0)
    held = limiter.acquire()
    limiter.acquire().drop()  # 4 * 0.9: the limit is 3
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = RatefuseInstruments(meter_provider=provider)
    instruments.add_adaptive("api", limiter)
    collector = RatefuseCollector()
    collector.add_adaptive("api", limiter)
    otel, prometheus = read_otel(reader), read_prometheus(collector)
    assert otel == prometheus
    api = (("limiter", "api"),)
    assert otel[("ratefuse_adaptive_limit", api)] == 3
    assert otel[("ratefuse_adaptive_in_flight", api)] == 1
    assert otel[("ratefuse_adaptive_drops", api)] == 1
    kinds = {
        metric.name: type(metric.data).__name__
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert kinds["ratefuse.adaptive.limit"] == "Gauge"
    assert kinds["ratefuse.adaptive.drops"] == "Sum"
    held.release()
    provider.shutdown()


class CountingLimiter:
    """A limiter whose counters() counts its readings."""

    def __init__(self) -> None:
        self.limiter = Limiter("1/s", clock=lambda: 0)
        self.readings = 0

    def counters(self) -> Any:
        self.readings += 1
        return self.limiter.counters()


def test_a_collection_reads_the_counters_once() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = RatefuseInstruments(meter_provider=provider)
    counted = CountingLimiter()
    instruments.add_limiter("counted", counted)  # read once for its families
    for collections in (1, 2, 3):
        read_otel(reader)
        assert counted.readings == 1 + collections
    provider.shutdown()


class StatsLimiter:
    """A limiter reporting a Redis limiter's stats() record."""

    def stats(self) -> LimiterStats:
        return LimiterStats(decisions=7, fallbacks=2)


def test_redis_stats_added_later_are_reported_at_once() -> None:
    # The Redis stats fields have their instruments from the start, so a
    # Redis limiter added (or reloaded into the registry) later reports at
    # the next collection; the collection never creates instruments (the
    # SDK holds its lock while it collects).
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = RatefuseInstruments(meter_provider=provider, namespace="app")
    assert read_otel(reader) == {}
    instruments.add_limiter("remote", StatsLimiter())
    found = read_otel(reader)
    assert found[("app_redis_limiter_decisions", (("limiter", "remote"),))] == 7
    assert found[("app_redis_limiter_fallbacks", (("limiter", "remote"),))] == 2
    provider.shutdown()


@pytest.fixture
def spans() -> Iterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    instrument()
    yield provider.get_tracer("test"), exporter
    uninstrument()
    provider.shutdown()


def test_span_events_for_breaker_rejections(impl: Any, spans: Any) -> None:
    tracer, exporter = spans
    clock = ManualClock()
    breaker = make_breaker(
        impl,
        BreakerConfig(minimum_calls=1, window_size=1, wait_duration=5.0),
        clock=clock,
    )

    @breaker
    def call() -> str:
        return "ok"

    with tracer.start_as_current_span("admitted"):
        assert call() == "ok"
    breaker.force_open()
    breaker.reset()
    permit = breaker.try_acquire()
    assert permit is not None
    permit.on_error(0.0, Boom())  # OPEN for 5 s
    clock.advance(2)
    with tracer.start_as_current_span("rejected"):
        with pytest.raises(CircuitOpenError):
            call()
        with pytest.raises(CircuitOpenError), breaker.guard():
            pass
    admitted, rejected = exporter.get_finished_spans()
    assert admitted.events == ()
    assert [event.name for event in rejected.events] == [BREAKER_REJECTED] * 2
    attributes = dict(rejected.events[0].attributes)
    assert attributes == {"ratefuse.breaker": "test", "ratefuse.retry_after": 3.0}


def test_span_events_for_raised_denials(spans: Any) -> None:
    tracer, exporter = spans
    limiter = Limiter("1/s", clock=lambda: 0)
    with tracer.start_as_current_span("request"):
        limiter.acquire(timeout=0)
        with pytest.raises(RateLimitExceeded):
            limiter.acquire(timeout=0)
        with pytest.raises(RateLimitExceeded):
            limiter.acquire(5, timeout=0)  # never: above the capacity
    (span,) = exporter.get_finished_spans()
    assert [dict(event.attributes) for event in span.events] == [
        {"ratefuse.retry_after": 1.0, "ratefuse.limit": 1, "ratefuse.remaining": 0},
        {"ratefuse.retry_after": -1.0, "ratefuse.limit": 1, "ratefuse.remaining": 0},
    ]
    assert {event.name for event in span.events} == {LIMIT_DENIED}


def test_no_span_no_event_and_uninstrument_removes_the_hooks(spans: Any) -> None:
    tracer, exporter = spans
    limiter = Limiter("1/s", clock=lambda: 0)
    limiter.acquire(timeout=0)
    with pytest.raises(RateLimitExceeded):
        limiter.acquire(timeout=0)  # no current span: nothing to add to
    assert SPAN_HOOKS[ON_DENIED] is not None
    uninstrument()
    assert (SPAN_HOOKS[ON_DENIED], SPAN_HOOKS[ON_REJECTED]) == (None, None)
    with tracer.start_as_current_span("request"), pytest.raises(RateLimitExceeded):
        limiter.acquire(timeout=0)
    (span,) = exporter.get_finished_spans()
    assert span.events == ()


def test_missing_opentelemetry_names_the_extra(tmp_path: Any) -> None:
    # A child interpreter where opentelemetry cannot be imported.
    blocker = tmp_path / "opentelemetry"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    result = subprocess.run(
        [sys.executable, "-c", "import ratefuse.otel"],
        env={"PYTHONPATH": f"{tmp_path}:{':'.join(sys.path)}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "pip install 'ratefuse[otel]'" in result.stderr


def test_the_config_version_and_metric_samples_are_reported_as_in_prometheus(
    registry: Registry,
) -> None:
    from ratefuse.shedding import PriorityLimiter

    registry.update(
        {
            "limiters": {
                "api": {"rate": "2/s"},
                "users": {"rate": "1/s", "keyed": True, "max_keys": 2},
            },
            "breakers": {"db": {"minimum_calls": 1, "window_size": 1}},
        },
        version=7,
    )
    shed = PriorityLimiter(Limiter("1/s", clock=lambda: 0))
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    instruments = RatefuseInstruments(registry, meter_provider=provider)
    instruments.add_limiter("shed", shed)
    collector = RatefuseCollector(registry)
    collector.add_limiter("shed", shed)
    shed.try_acquire()
    shed.try_acquire()
    otel, prometheus = read_otel(reader), read_prometheus(collector)
    assert otel == prometheus
    assert otel[("ratefuse_config_version", ())] == 7
    assert any(name.startswith("ratefuse_priority_limiter") for name, _ in otel)
    provider.shutdown()
