"""Prometheus metrics read at scrape time from the counters the cores keep.

Needs the ``prometheus`` extra (``pip install 'ratefuse[prometheus]'``)::

    from prometheus_client import REGISTRY
    from ratefuse.metrics import RatefuseCollector

    REGISTRY.register(RatefuseCollector(registry))

Nothing runs on the decision path: a decision bumps an integer inside the
core, and `RatefuseCollector.collect` copies the counters when Prometheus
scrapes. Families (``ratefuse`` is the default namespace):

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
- ``ratefuse_adaptive_*{limiter}``: adaptive concurrency limits added with
  `RatefuseCollector.add_adaptive` (see :mod:`ratefuse.metrics_adaptive`).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import REGISTRY, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ratefuse.metrics needs prometheus_client: pip install 'ratefuse[prometheus]'"
    ) from exc

from ratefuse.breaker import State
from ratefuse.metrics_adaptive import adaptive_metrics

if TYPE_CHECKING:
    from ratefuse.config import Registry

__all__ = ["RatefuseCollector", "register"]


class _Backend(Protocol):
    breaker: Any

    def stats(self) -> Any: ...


class RatefuseCollector:
    """`RatefuseCollector` reports the limiters and breakers of ``registry``
    (None: none) and those added with `add_limiter`, `add_breaker` and
    `add_backend`, read at every scrape. ``namespace`` prefixes every
    family name. Thread-safe."""

    def __init__(
        self, registry: Registry | None = None, *, namespace: str = "ratefuse"
    ) -> None:
        self._registry = registry
        self._namespace = namespace
        self._lock = threading.Lock()
        self._limiters: dict[str, Any] = {}
        self._breakers: dict[str, Any] = {}
        self._backends: dict[str, _Backend] = {}
        self._adaptive: dict[str, Any] = {}

    def add_limiter(self, name: str, limiter: object) -> None:
        """`add_limiter` reports ``limiter`` (anything with ``counters()``
        or, for a Redis limiter, ``stats()``) as ``limiter=name``."""
        with self._lock:
            self._limiters[name] = limiter

    def add_breaker(self, name: str, breaker: object) -> None:
        """`add_breaker` reports ``breaker`` (a CircuitBreaker) as
        ``breaker=name``."""
        with self._lock:
            self._breakers[name] = breaker

    def add_backend(self, name: str, backend: object) -> None:
        """`add_backend` reports a ``ratefuse.redis.RedisBackend`` as
        ``backend=name``."""
        with self._lock:
            self._backends[name] = backend  # type: ignore[assignment]

    def add_adaptive(self, name: str, limiter: object) -> None:
        """`add_adaptive` reports an AdaptiveLimiter as ``limiter=name``."""
        with self._lock:
            self._adaptive[name] = limiter

    def describe(self) -> list[Metric]:
        """`describe` is empty: the families depend on what is registered
        at scrape time, so prometheus_client must not call collect early."""
        return []

    def collect(self) -> Iterator[Metric]:
        """`collect` reads every counter now."""
        limiters, breakers, backends = self._snapshot()
        yield from _Families(self._namespace).fill(limiters, breakers, backends)
        version = None if self._registry is None else self._registry.config_version
        if version is not None:
            prefix = f"{self._namespace}_" if self._namespace else ""
            gauge = GaugeMetricFamily(
                f"{prefix}config_version", "Version of the configuration in force."
            )
            gauge.add_metric([], version)
            yield gauge
        with self._lock:
            adaptive = dict(self._adaptive)
        yield from adaptive_metrics(self._namespace, adaptive)

    def _snapshot(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, _Backend]]:
        with self._lock:
            limiters, breakers = dict(self._limiters), dict(self._breakers)
            backends = dict(self._backends)
        if self._registry is not None:
            limiters = {**self._registry.limiters(), **limiters}
            breakers = {**self._registry.breakers(), **breakers}
            registered = {
                name: entry.redis for name, entry in self._registry.backends().items()
            }
            backends = {**registered, **backends}
        return limiters, breakers, backends


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


# The families every scrape has (those with samples are reported), in
# order: attribute, name after the namespace, gauge (else counter), labels
# and help.
_FIXED_FAMILIES: tuple[tuple[str, str, bool, tuple[str, ...], str], ...] = (
    ("decisions", "limiter_decisions", False, ("limiter", "decision"),
     "Verdicts of in-memory limiters."),
    ("keys", "limiter_keys", True, ("limiter",),
     "Live keys of keyed limiters."),
    ("evictions", "limiter_evictions", False, ("limiter",),
     "Key states evicted before they were idle (the only over-admission)."),
    ("expired", "limiter_expired", False, ("limiter",),
     "Idle key states dropped (harmless)."),
    ("state", "breaker_state", True, ("breaker", "state"),
     "1 for the state each breaker is in, 0 for the others."),
    ("calls", "breaker_calls", False, ("breaker", "result"),
     "Calls a breaker permitted or rejected."),
    ("outcomes", "breaker_outcomes", False, ("breaker", "outcome"),
     "Call outcomes a breaker recorded."),
    ("slow", "breaker_slow_calls", False, ("breaker",),
     "Recorded calls slower than slow_call_duration."),
    ("transitions", "breaker_transitions", False, ("breaker", "to_state"),
     "State changes of a breaker, by the state entered."),
)  # fmt: skip


class _Families:
    # The metric families of one scrape.

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}_" if namespace else ""
        self.fixed: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
            attribute: (GaugeMetricFamily if gauge else CounterMetricFamily)(
                f"{self.prefix}{name}", documentation, labels=list(labels)
            )
            for attribute, name, gauge, labels, documentation in _FIXED_FAMILIES
        }
        self.fields: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}

    def fill(
        self,
        limiters: Mapping[str, Any],
        breakers: Mapping[str, Any],
        backends: Mapping[str, _Backend],
    ) -> list[Metric]:
        for name, limiter in sorted(limiters.items()):
            self._limiter(name, limiter)
        for name, breaker in sorted(breakers.items()):
            self._breaker(name, breaker)
        for name, backend in sorted(backends.items()):
            self._stats("redis_backend", "backend", name, backend.stats())
            self._breaker(f"backend:{name}", backend.breaker)
            # A cluster's nodes each have their own breaker.
            nodes = getattr(backend, "node_breakers", None)
            for node, breaker in sorted(nodes().items() if callable(nodes) else ()):
                self._breaker(f"backend:{name}@{node}", breaker)
        fixed = [family for family in self.fixed.values() if family.samples]
        return [*fixed, *self.fields.values()]

    def _limiter(self, name: str, limiter: Any) -> None:
        fixed = self.fixed
        samples = getattr(limiter, "metric_samples", None)
        if callable(samples):
            self._samples(name, samples())
            return
        counters = getattr(limiter, "counters", None)
        if callable(counters):
            snapshot = counters()
            fixed["decisions"].add_metric([name, "allowed"], snapshot.allowed)
            fixed["decisions"].add_metric([name, "denied"], snapshot.denied)
        stats = getattr(limiter, "stats", None)
        if not callable(stats):
            return
        found = stats()
        if isinstance(found, dict):  # a keyed limiter's table
            fixed["keys"].add_metric([name], found["live_keys"])
            fixed["evictions"].add_metric([name], found["evictions"])
            fixed["expired"].add_metric([name], found["expired"])
        else:  # a Redis limiter's LimiterStats
            self._stats("redis_limiter", "limiter", name, found)

    def _samples(self, name: str, samples: Any) -> None:
        # (family, help, gauge, labels, value) tuples, labelled limiter=name.
        for family_name, documentation, gauge, labels, value in samples:
            family = self.fields.get(family_name)
            if family is None:
                kind = GaugeMetricFamily if gauge else CounterMetricFamily
                family = self.fields[family_name] = kind(
                    f"{self.prefix}{family_name}",
                    documentation,
                    labels=["limiter", *labels],
                )
            family.add_metric([name, *labels.values()], value)

    def _stats(self, kind: str, label: str, name: str, stats: object) -> None:
        # Every int field of a stats dataclass as a counter of its own.
        if not dataclasses.is_dataclass(stats):
            return
        for field in dataclasses.fields(stats):
            value = getattr(stats, field.name)
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            family = self.fields.get(f"{kind}_{field.name}")
            if family is None:
                family = self.fields[f"{kind}_{field.name}"] = CounterMetricFamily(
                    f"{self.prefix}{kind}_{field.name}",
                    f"{field.name} of {kind.replace('_', ' ')} stats().",
                    labels=[label],
                )
            family.add_metric([name], value)

    def _breaker(self, name: str, breaker: Any) -> None:
        fixed = self.fixed
        current = breaker.state
        for state in State:
            fixed["state"].add_metric(
                [name, state.name], 1.0 if state == current else 0.0
            )
        counters = breaker.counters()
        fixed["calls"].add_metric([name, "permitted"], counters.permitted)
        fixed["calls"].add_metric([name, "rejected"], counters.rejected)
        fixed["outcomes"].add_metric([name, "success"], counters.successes)
        fixed["outcomes"].add_metric([name, "failure"], counters.failures)
        fixed["slow"].add_metric([name], counters.slow)
        for state in State:
            fixed["transitions"].add_metric(
                [name, state.name], counters.transitions[state]
            )
