"""Prometheus metrics read at scrape time from the counters the cores keep.

Needs the ``prometheus`` extra (``pip install 'ratefuse[prometheus]'``)::

    from prometheus_client import REGISTRY
    from ratefuse.metrics import RatefuseCollector

    REGISTRY.register(RatefuseCollector(registry))

Nothing runs on the decision path: a decision bumps an integer inside the
core, and `RatefuseCollector.collect` copies the counters when Prometheus
scrapes (with :func:`ratefuse.telemetry.snapshot`, which the OpenTelemetry
exporter of :mod:`ratefuse.otel` reads too). Families (``ratefuse`` is
the default namespace):

- ``ratefuse_limiter_decisions_total{limiter, decision}``: allowed/denied
  verdicts of every in-memory limiter (decide_many counts each key);
- ``ratefuse_limiter_keys{limiter}``, ``ratefuse_limiter_evictions_total``,
  ``ratefuse_limiter_expired_total``: the key tables of keyed limiters;
- ``ratefuse_breaker_state{breaker, state}``: 1 for the current state;
- ``ratefuse_breaker_calls_total{breaker, result}``: permitted / rejected;
- ``ratefuse_breaker_outcomes_total{breaker, outcome}``: success / failure
  recorded, and ``ratefuse_breaker_slow_calls_total``;
- ``ratefuse_breaker_transitions_total{breaker, to_state}``;
- ``ratefuse_redis_limiter_<field>_total{limiter}``: every integer field of
  a Redis limiter's ``stats()`` (decisions, fallbacks, ...), whatever
  fields that version has;
- ``ratefuse_<family>{limiter, ...}``: the samples of an object added as
  a limiter that has ``metric_samples()`` (adaptive throttles, priority
  limiters and bulkheads: see their ``metric_samples``);
- ``ratefuse_redis_backend_<field>_total{backend}``: every integer field of
  a Redis backend's ``stats()`` (round trips, transport errors, timeouts,
  ...), and its breaker as above under ``breaker="backend:<name>"`` (on a
  cluster, each node's too, under ``breaker="backend:<name>@<host:port>"``);
- ``ratefuse_config_version``: the version of the registry's configuration
  from a config source (see ``ratefuse.config.ConfigFollower``);
- ``ratefuse_adaptive_limit{limiter}``, ``ratefuse_adaptive_in_flight``,
  ``ratefuse_adaptive_waiting``, ``ratefuse_adaptive_samples_total``,
  ``ratefuse_adaptive_drops_total``, ``ratefuse_adaptive_rejected_total``
  and ``ratefuse_adaptive_latency_seconds{limiter, estimate}`` (min,
  smoothed, long, last): adaptive concurrency limits added with
  `RatefuseCollector.add_adaptive`, read from their ``stats()``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import REGISTRY, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ratefuse.metrics needs prometheus_client: pip install 'ratefuse[prometheus]'"
    ) from exc

from ratefuse.telemetry import Sources, families_of, snapshot

if TYPE_CHECKING:
    from ratefuse.config import Registry

__all__ = ["RatefuseCollector", "register"]


class RatefuseCollector(Sources):
    """`RatefuseCollector` reports the limiters and breakers of ``registry``
    (None: none) and those added with `add_limiter`, `add_breaker` and
    `add_backend`, read at every scrape. ``namespace`` prefixes every
    family name. Thread-safe."""

    def __init__(
        self, registry: Registry | None = None, *, namespace: str = "ratefuse"
    ) -> None:
        super().__init__(registry)
        self._namespace = namespace
        self._prefix = f"{namespace}_" if namespace else ""

    def describe(self) -> list[Metric]:
        """`describe` is empty: the families depend on what is registered
        at scrape time, so prometheus_client must not call collect early."""
        return []

    def collect(self) -> Iterator[Metric]:
        """`collect` reads every counter now."""
        for name, samples in families_of(snapshot(self)).items():
            family = samples[0].family
            kind = GaugeMetricFamily if family.kind == "gauge" else CounterMetricFamily
            metric = kind(
                f"{self._prefix}{name}",
                family.documentation,
                labels=list(family.labels),
            )
            for sample in samples:
                metric.add_metric(list(sample.labels), sample.value)
            yield metric


def register(
    registry: Registry | None = None,
    prometheus_registry: CollectorRegistry | None = None,
    *,
    namespace: str = "ratefuse",
) -> RatefuseCollector:
    """`register` registers a :class:`RatefuseCollector` of ``registry`` in
    ``prometheus_registry`` (None: prometheus_client's default) and returns
    it."""
    collector = RatefuseCollector(registry, namespace=namespace)
    (REGISTRY if prometheus_registry is None else prometheus_registry).register(
        collector
    )
    return collector
