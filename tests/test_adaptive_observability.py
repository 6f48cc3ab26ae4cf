"""An adaptive limit's stats in Prometheus metrics and in health."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from ratefuse import AdaptiveLimiter
from ratefuse.adaptive import AIMD
from ratefuse.health import check_health
from ratefuse.metrics import RatefuseCollector

MS = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def busy_limiter() -> AdaptiveLimiter:
    clock = Clock()
    limiter = AdaptiveLimiter(AIMD(initial_limit=4, min_limit=2), clock=clock)
    limiter.acquire()  # held to the end
    permit = limiter.acquire()
    clock.now += 5 * MS
    permit.drop()  # 4 * 0.9: the limit is 3
    extra = [limiter.try_acquire(), limiter.try_acquire()]
    assert limiter.try_acquire() is None
    for taken in extra:
        assert taken is not None
        taken.ignore()
    return limiter


def test_metrics_report_the_limit_load_and_latencies() -> None:
    registry = CollectorRegistry()
    collector = RatefuseCollector()
    collector.add_adaptive("api", busy_limiter())
    registry.register(collector)
    text = generate_latest(registry).decode()
    for line in (
        'ratefuse_adaptive_limit{limiter="api"} 3.0',
        'ratefuse_adaptive_in_flight{limiter="api"} 1.0',
        'ratefuse_adaptive_samples_total{limiter="api"} 1.0',
        'ratefuse_adaptive_drops_total{limiter="api"} 1.0',
        'ratefuse_adaptive_latency_seconds{estimate="last",limiter="api"} 0.005',
        'ratefuse_adaptive_latency_seconds{estimate="min",limiter="api"} 0.005',
    ):
        assert line in text, line


def test_no_adaptive_limiter_no_family() -> None:
    registry = CollectorRegistry()
    registry.register(RatefuseCollector())
    assert b"adaptive" not in generate_latest(registry)


def test_health_reports_adaptive_limits_without_changing_ok() -> None:
    health = check_health({}, {}, 0.1, adaptive={"api": busy_limiter()})
    assert health.ok
    state = health.to_dict()["adaptive"]["api"]
    assert state == {
        "algorithm": "AIMD",
        "limit": 3,
        "in_flight": 1,
        "waiting": 0,
        "at_floor": False,
        "smoothed_rtt_ms": 5.0,
        "min_rtt_ms": 5.0,
    }
    assert "adaptive" not in check_health({}, {}, 0.1).to_dict()
