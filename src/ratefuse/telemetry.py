"""The counters of limiters, breakers and Redis backends read into neutral
samples, which both exporters turn into their own metric types:
:mod:`ratefuse.metrics` (Prometheus) and :mod:`ratefuse.otel`
(OpenTelemetry). One reading, one set of names, so the two never disagree.

Nothing runs on the decision path: a decision bumps an integer inside the
core, and `snapshot` copies the counters when an exporter asks.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ratefuse.breaker import State

if TYPE_CHECKING:
    from ratefuse.config import Registry

__all__ = [
    "FIXED_FAMILIES",
    "Family",
    "Sample",
    "Sources",
    "families_of",
    "redis_families",
    "snapshot",
    "stats_family",
]

Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Family:
    """`Family` is one metric: ``group`` and ``metric`` make its name
    (``<group>_<metric>`` for Prometheus, ``<group>.<metric>`` for
    OpenTelemetry, after the namespace), ``kind`` counter or gauge,
    ``labels`` its label names, ``documentation`` its help text."""

    group: str
    metric: str
    kind: Kind
    labels: tuple[str, ...]
    documentation: str

    @property
    def name(self) -> str:
        """`name` is ``<group>_<metric>`` (``<group>`` when metric is "")."""
        return f"{self.group}_{self.metric}" if self.metric else self.group

    @property
    def otel_name(self) -> str:
        """`otel_name` is ``<group>.<metric>`` (``<group>`` when metric is
        "")."""
        return f"{self.group}.{self.metric}" if self.metric else self.group


@dataclass(frozen=True)
class Sample:
    """`Sample` is one value of ``family`` with ``labels`` (in the
    family's label order)."""

    family: Family
    labels: tuple[str, ...]
    value: float


FIXED_FAMILIES: tuple[Family, ...] = (
    Family("limiter", "decisions", "counter", ("limiter", "decision"),
           "Verdicts of in-memory limiters."),
    Family("limiter", "keys", "gauge", ("limiter",),
           "Live keys of keyed limiters."),
    Family("limiter", "evictions", "counter", ("limiter",),
           "Key states evicted before they were idle (the only over-admission)."),
    Family("limiter", "expired", "counter", ("limiter",),
           "Idle key states dropped (harmless)."),
    Family("breaker", "state", "gauge", ("breaker", "state"),
           "1 for the state each breaker is in, 0 for the others."),
    Family("breaker", "calls", "counter", ("breaker", "result"),
           "Calls a breaker permitted or rejected."),
    Family("breaker", "outcomes", "counter", ("breaker", "outcome"),
           "Call outcomes a breaker recorded."),
    Family("breaker", "slow_calls", "counter", ("breaker",),
           "Recorded calls slower than slow_call_duration."),
    Family("breaker", "transitions", "counter", ("breaker", "to_state"),
           "State changes of a breaker, by the state entered."),
    Family("config", "version", "gauge", (),
           "Version of the configuration in force."),
    Family("adaptive", "limit", "gauge", ("limiter",),
           "The concurrency limit of an adaptive limiter now."),
    Family("adaptive", "in_flight", "gauge", ("limiter",),
           "Calls holding a slot of an adaptive limiter."),
    Family("adaptive", "waiting", "gauge", ("limiter",),
           "Callers queued for a slot of an adaptive limiter."),
    Family("adaptive", "samples", "counter", ("limiter",),
           "Calls whose latency an adaptive limiter was fed."),
    Family("adaptive", "drops", "counter", ("limiter",),
           "Calls an adaptive limiter was fed as drops."),
    Family("adaptive", "rejected", "counter", ("limiter",),
           "Calls an adaptive limiter refused."),
    Family("adaptive", "latency_seconds", "gauge", ("limiter", "estimate"),
           "Latencies an adaptive limiter measured: min (no-load), smoothed, "
           "long (Gradient2's long-term average) and last."),
)  # fmt: skip
# The latency estimates of an adaptive limiter's stats (``<estimate>_rtt``).
_ESTIMATES = ("min", "smoothed", "long", "last")
_FIXED = {family.name: family for family in FIXED_FAMILIES}


class _Backend(Protocol):
    breaker: Any

    def stats(self) -> Any: ...


class Sources:
    """`Sources` is what an exporter reports: the limiters, breakers and
    backends of ``registry`` (None: none) and those added with
    `add_limiter`, `add_breaker`, `add_backend` and `add_adaptive` (an
    added name wins). Thread-safe."""

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry
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
        """`add_breaker` reports ``breaker`` (a CircuitBreaker or fleet
        breaker) as ``breaker=name``."""
        with self._lock:
            self._breakers[name] = breaker

    def add_backend(self, name: str, backend: object) -> None:
        """`add_backend` reports a ``ratefuse.redis.RedisBackend`` as
        ``backend=name``."""
        with self._lock:
            self._backends[name] = backend  # type: ignore[assignment]

    def add_adaptive(self, name: str, limiter: object) -> None:
        """`add_adaptive` reports an :class:`ratefuse.AdaptiveLimiter` (its
        ``stats()``) as ``limiter=name`` in the ``adaptive`` families."""
        with self._lock:
            self._adaptive[name] = limiter

    def adaptive(self) -> dict[str, Any]:
        """`adaptive` is the adaptive limiters added, by name, now."""
        with self._lock:
            return dict(self._adaptive)

    def read(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """`read` is (limiters, breakers, backends) by name, now."""
        with self._lock:
            limiters, breakers = dict(self._limiters), dict(self._breakers)
            backends: dict[str, Any] = dict(self._backends)
        registry = self.registry
        if registry is not None:
            limiters = {**registry.limiters(), **limiters}
            breakers = {**registry.breakers(), **breakers}
            registered = {
                name: entry.redis for name, entry in registry.backends().items()
            }
            backends = {**registered, **backends}
        return limiters, breakers, backends


def snapshot(sources: Sources) -> list[Sample]:
    """`snapshot` reads every counter of ``sources`` now, in a stable
    order: names sorted, and each family's samples together."""
    limiters, breakers, backends = sources.read()
    reading = _Reading()
    registry = sources.registry
    version = None if registry is None else registry.config_version
    if version is not None:
        reading.add("config_version", (), version)
    for name, limiter in sorted(limiters.items()):
        reading.limiter(name, limiter)
    for name, breaker in sorted(breakers.items()):
        reading.breaker(name, breaker)
    for name, backend in sorted(backends.items()):
        reading.stats("redis_backend", "backend", name, backend.stats())
        reading.breaker(f"backend:{name}", backend.breaker)
        # A cluster's nodes each have their own breaker.
        nodes = getattr(backend, "node_breakers", None)
        for node, breaker in sorted(nodes().items() if callable(nodes) else ()):
            reading.breaker(f"backend:{name}@{node}", breaker)
    for name, adaptive in sorted(sources.adaptive().items()):
        reading.adaptive(name, adaptive.stats())
    return reading.samples()


class _Reading:
    # The samples of one snapshot, grouped by family in first-seen order
    # after the fixed families.

    def __init__(self) -> None:
        self.by_family: dict[str, list[Sample]] = {f.name: [] for f in FIXED_FAMILIES}
        self.families: dict[str, Family] = dict(_FIXED)

    def samples(self) -> list[Sample]:
        return [sample for group in self.by_family.values() for sample in group]

    def add(self, family: str, labels: tuple[str, ...], value: float) -> None:
        found = self.families[family]
        self.by_family[family].append(Sample(found, labels, value))

    def limiter(self, name: str, limiter: Any) -> None:
        samples = getattr(limiter, "metric_samples", None)
        if callable(samples):
            self.own_samples(name, samples())
            return
        counters = getattr(limiter, "counters", None)
        if callable(counters):
            counts = counters()
            self.add("limiter_decisions", (name, "allowed"), counts.allowed)
            self.add("limiter_decisions", (name, "denied"), counts.denied)
        stats = getattr(limiter, "stats", None)
        if not callable(stats):
            return
        found = stats()
        if isinstance(found, dict):  # a keyed limiter's table
            self.add("limiter_keys", (name,), found["live_keys"])
            self.add("limiter_evictions", (name,), found["evictions"])
            self.add("limiter_expired", (name,), found["expired"])
        else:  # a Redis limiter's LimiterStats
            self.stats("redis_limiter", "limiter", name, found)

    def own_samples(self, name: str, samples: Any) -> None:
        # An object's own families: (family, help, gauge, labels, value)
        # tuples (see ``metric_samples``), labelled limiter=name first.
        for family, documentation, gauge, labels, value in samples:
            if family not in self.families:
                self.families[family] = Family(
                    family,
                    "",
                    "gauge" if gauge else "counter",
                    ("limiter", *labels),
                    documentation,
                )
                self.by_family[family] = []
            self.add(family, (name, *labels.values()), value)

    def stats(self, group: str, label: str, name: str, stats: object) -> None:
        # Every int field of a stats dataclass as a counter of its own.
        if not dataclasses.is_dataclass(stats):
            return
        for field in dataclasses.fields(stats):
            value = getattr(stats, field.name)
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            family = f"{group}_{field.name}"
            if family not in self.families:
                self.families[family] = stats_family(group, label, field.name)
                self.by_family[family] = []
            self.add(family, (name,), value)

    def adaptive(self, name: str, stats: Any) -> None:
        for field in ("limit", "in_flight", "waiting", "samples", "drops", "rejected"):
            self.add(f"adaptive_{field}", (name,), getattr(stats, field))
        for estimate in _ESTIMATES:
            self.add(
                "adaptive_latency_seconds",
                (name, estimate),
                getattr(stats, f"{estimate}_rtt"),
            )

    def breaker(self, name: str, breaker: Any) -> None:
        current = breaker.state
        for state in State:
            self.add("breaker_state", (name, state.name), float(state == current))
        counters = breaker.counters()
        self.add("breaker_calls", (name, "permitted"), counters.permitted)
        self.add("breaker_calls", (name, "rejected"), counters.rejected)
        self.add("breaker_outcomes", (name, "success"), counters.successes)
        self.add("breaker_outcomes", (name, "failure"), counters.failures)
        self.add("breaker_slow_calls", (name,), counters.slow)
        for state in State:
            self.add(
                "breaker_transitions", (name, state.name), counters.transitions[state]
            )


def stats_family(group: str, label: str, field: str) -> Family:
    """`stats_family` is the counter family of the int ``field`` of a
    stats record (``group`` "redis_limiter" or "redis_backend")."""
    return Family(
        group,
        field,
        "counter",
        (label,),
        f"{field} of {group.replace('_', ' ')} stats().",
    )


def redis_families() -> tuple[Family, ...]:
    """`redis_families` is the family of every int field of the Redis
    limiter's and backend's stats records, those `snapshot` reports for
    them (none when ratefuse.redis cannot be imported: then no Redis
    limiter exists either)."""
    try:
        from ratefuse.redis import ExchangeCounts, LimiterStats
    except ImportError:
        return ()
    return tuple(
        stats_family(group, label, field.name)
        for group, label, record in (
            ("redis_limiter", "limiter", LimiterStats()),
            ("redis_backend", "backend", ExchangeCounts()),
        )
        for field in dataclasses.fields(record)
        if isinstance(getattr(record, field.name), int)
        and not isinstance(getattr(record, field.name), bool)
    )


def families_of(samples: list[Sample]) -> Mapping[str, list[Sample]]:
    """`families_of` groups ``samples`` by family name, in order."""
    grouped: dict[str, list[Sample]] = {}
    for sample in samples:
        grouped.setdefault(sample.family.name, []).append(sample)
    return grouped
