"""ratefuse.metrics: the Prometheus exposition of a registry's limiters and
breakers, parsed back with prometheus_client's parser."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from breaker_support import Boom
from ratefuse import Limiter
from ratefuse.breaker import BreakerConfig, CircuitBreaker, State
from ratefuse.config import Registry
from ratefuse.metrics import RatefuseCollector, register


def scrape(
    prometheus: CollectorRegistry,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """`scrape` parses the exposition into {(sample name, labels): value}."""
    text = generate_latest(prometheus).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


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


def test_exposition_reads_the_counters_at_scrape_time(registry: Registry) -> None:
    prometheus = CollectorRegistry()
    register(registry, prometheus)
    first = scrape(prometheus)
    assert (
        value(
            first, "ratefuse_limiter_decisions_total", limiter="api", decision="allowed"
        )
        == 0
    )
    api, users = registry.limiter("api"), registry.limiter("users")
    for _ in range(3):
        api.try_acquire()
    for key in ("a", "a", "b", "c"):  # c evicts a state of the 2-key table
        users.try_acquire(key)
    breaker = registry.breaker("db")
    breaker.try_acquire().on_error(0.0, Boom())  # opens
    assert breaker.try_acquire() is None
    samples = scrape(prometheus)
    decisions = "ratefuse_limiter_decisions_total"
    assert value(samples, decisions, limiter="api", decision="allowed") == 2
    assert value(samples, decisions, limiter="api", decision="denied") == 1
    assert value(samples, decisions, limiter="users", decision="allowed") == 3
    assert value(samples, decisions, limiter="users", decision="denied") == 1
    assert value(samples, "ratefuse_limiter_keys", limiter="users") == 2
    assert value(samples, "ratefuse_limiter_evictions_total", limiter="users") == 1
    assert value(samples, "ratefuse_breaker_state", breaker="db", state="OPEN") == 1
    assert value(samples, "ratefuse_breaker_state", breaker="db", state="CLOSED") == 0
    assert (
        value(samples, "ratefuse_breaker_calls_total", breaker="db", result="permitted")
        == 1
    )
    assert (
        value(samples, "ratefuse_breaker_calls_total", breaker="db", result="rejected")
        == 1
    )
    assert (
        value(
            samples, "ratefuse_breaker_outcomes_total", breaker="db", outcome="failure"
        )
        == 1
    )
    assert (
        value(
            samples, "ratefuse_breaker_transitions_total", breaker="db", to_state="OPEN"
        )
        == 1
    )
    assert not any(name.startswith("ratefuse_redis") for name, _ in samples)


def test_collector_follows_registry_updates_and_added_objects(
    registry: Registry,
) -> None:
    prometheus = CollectorRegistry()
    collector = RatefuseCollector(registry, namespace="svc")
    prometheus.register(collector)
    extra = Limiter("1/s", clock=lambda: 0)
    extra.try_acquire()
    collector.add_limiter("extra", extra)
    collector.add_breaker("manual", CircuitBreaker("manual", BreakerConfig()))
    registry.update(
        {"limiters": {"api": {"rate": "5/s"}, "new": {"rate": "1/s"}}},
        allow_removals=True,
    )
    samples = scrape(prometheus)
    limiters = {
        dict(labels)["limiter"]
        for name, labels in samples
        if name == "svc_limiter_decisions_total"
    }
    assert limiters == {"api", "new", "extra"}  # "users" was dropped
    assert value(samples, "svc_breaker_state", breaker="manual", state="CLOSED") == 1
    assert (
        value(
            samples, "svc_limiter_decisions_total", limiter="extra", decision="allowed"
        )
        == 1
    )


def test_breaker_counters_never_go_down_on_reset(registry: Registry) -> None:
    prometheus = CollectorRegistry()
    register(registry, prometheus)
    breaker = registry.breaker("db")
    breaker.transition_to(State.FORCED_OPEN)
    assert breaker.try_acquire() is None
    before = value(
        scrape(prometheus),
        "ratefuse_breaker_calls_total",
        breaker="db",
        result="rejected",
    )
    breaker.reset()
    after = value(
        scrape(prometheus),
        "ratefuse_breaker_calls_total",
        breaker="db",
        result="rejected",
    )
    assert before == after == 1


def test_missing_prometheus_client_names_the_extra(tmp_path) -> None:
    # A child interpreter where prometheus_client cannot be imported.
    blocker = tmp_path / "prometheus_client"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('blocked for the test')\n")
    result = subprocess.run(
        [sys.executable, "-c", "import ratefuse.metrics"],
        env={"PYTHONPATH": f"{tmp_path}:{':'.join(sys.path)}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "pip install 'ratefuse[prometheus]'" in result.stderr
