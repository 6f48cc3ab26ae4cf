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
- ``ratefuse_redis_backend_<field>_total{backend}``: every integer field of
  a Redis backend's ``stats()`` (round trips, transport errors, timeouts,
  ...), and its breaker as above under ``breaker="backend:<name>"``.
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

    def describe(self) -> list[Metric]:
        """`describe` is empty: the families depend on what is registered
        at scrape time, so prometheus_client must not call collect early."""
        return []

    def collect(self) -> Iterator[Metric]:
        """`collect` reads every counter now."""
        limiters, breakers, backends = self._snapshot()
        yield from _Families(self._namespace).fill(limiters, breakers, backends)

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


class _Families:
    # The metric families of one scrape.

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}_" if namespace else ""
        prefix = self.prefix
        self.decisions = CounterMetricFamily(
            f"{prefix}limiter_decisions",
            "Verdicts of in-memory limiters.",
            labels=["limiter", "decision"],
        )
        self.keys = GaugeMetricFamily(
            f"{prefix}limiter_keys", "Live keys of keyed limiters.", labels=["limiter"]
        )
        self.evictions = CounterMetricFamily(
            f"{prefix}limiter_evictions",
            "Key states evicted before they were idle (the only over-admission).",
            labels=["limiter"],
        )
        self.expired = CounterMetricFamily(
            f"{prefix}limiter_expired",
            "Idle key states dropped (harmless).",
            labels=["limiter"],
        )
        self.state = GaugeMetricFamily(
            f"{prefix}breaker_state",
            "1 for the state each breaker is in, 0 for the others.",
            labels=["breaker", "state"],
        )
        self.calls = CounterMetricFamily(
            f"{prefix}breaker_calls",
            "Calls a breaker permitted or rejected.",
            labels=["breaker", "result"],
        )
        self.outcomes = CounterMetricFamily(
            f"{prefix}breaker_outcomes",
            "Call outcomes a breaker recorded.",
            labels=["breaker", "outcome"],
        )
        self.slow = CounterMetricFamily(
            f"{prefix}breaker_slow_calls",
            "Recorded calls slower than slow_call_duration.",
            labels=["breaker"],
        )
        self.transitions = CounterMetricFamily(
            f"{prefix}breaker_transitions",
            "State changes of a breaker, by the state entered.",
            labels=["breaker", "to_state"],
        )
        self.fields: dict[str, CounterMetricFamily] = {}

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
        fixed = [
            self.decisions,
            self.keys,
            self.evictions,
            self.expired,
            self.state,
            self.calls,
            self.outcomes,
            self.slow,
            self.transitions,
        ]
        return [family for family in fixed if family.samples] + list(
            self.fields.values()
        )

    def _limiter(self, name: str, limiter: Any) -> None:
        counters = getattr(limiter, "counters", None)
        if callable(counters):
            snapshot = counters()
            self.decisions.add_metric([name, "allowed"], snapshot.allowed)
            self.decisions.add_metric([name, "denied"], snapshot.denied)
        stats = getattr(limiter, "stats", None)
        if not callable(stats):
            return
        found = stats()
        if isinstance(found, dict):  # a keyed limiter's table
            self.keys.add_metric([name], found["live_keys"])
            self.evictions.add_metric([name], found["evictions"])
            self.expired.add_metric([name], found["expired"])
        else:  # a Redis limiter's LimiterStats
            self._stats("redis_limiter", "limiter", name, found)

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
        current = breaker.state
        for state in State:
            self.state.add_metric([name, state.name], 1.0 if state == current else 0.0)
        counters = breaker.counters()
        self.calls.add_metric([name, "permitted"], counters.permitted)
        self.calls.add_metric([name, "rejected"], counters.rejected)
        self.outcomes.add_metric([name, "success"], counters.successes)
        self.outcomes.add_metric([name, "failure"], counters.failures)
        self.slow.add_metric([name], counters.slow)
        for state in State:
            self.transitions.add_metric([name, state.name], counters.transitions[state])
