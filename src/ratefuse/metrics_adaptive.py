"""Prometheus families of adaptive concurrency limits, read at scrape time
from :meth:`ratefuse.AdaptiveLimiter.stats` (nothing runs on the call
path). `RatefuseCollector.add_adaptive` registers a limiter; the families
(``ratefuse`` is the default namespace):

- ``ratefuse_adaptive_limit{limiter}``: the concurrency limit now;
- ``ratefuse_adaptive_in_flight{limiter}``, ``ratefuse_adaptive_waiting``:
  calls holding a slot, callers queued for one;
- ``ratefuse_adaptive_samples_total``, ``ratefuse_adaptive_drops_total``,
  ``ratefuse_adaptive_rejected_total``: calls fed to the algorithm, those
  fed as drops, calls refused;
- ``ratefuse_adaptive_latency_seconds{limiter, estimate}``: the measured
  latencies, ``estimate`` one of min, smoothed, long, last.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ratefuse.adaptive import AdaptiveLimiter

__all__ = ["adaptive_metrics"]


def adaptive_metrics(
    namespace: str, limiters: Mapping[str, AdaptiveLimiter]
) -> Iterator[Metric]:
    """`adaptive_metrics` yields the families of ``limiters`` (by name),
    none when there are none."""
    if not limiters:
        return
    prefix = f"{namespace}_adaptive_" if namespace else "adaptive_"
    gauges = {
        field: GaugeMetricFamily(f"{prefix}{field}", help_text, labels=["limiter"])
        for field, help_text in (
            ("limit", "The concurrency limit of an adaptive limiter now."),
            ("in_flight", "Calls holding a slot of an adaptive limiter."),
            ("waiting", "Callers queued for a slot of an adaptive limiter."),
        )
    }
    counters = {
        field: CounterMetricFamily(f"{prefix}{field}", help_text, labels=["limiter"])
        for field, help_text in (
            ("samples", "Calls whose latency an adaptive limiter was fed."),
            ("drops", "Calls an adaptive limiter was fed as drops."),
            ("rejected", "Calls an adaptive limiter refused."),
        )
    }
    latency = GaugeMetricFamily(
        f"{prefix}latency_seconds",
        "Latencies an adaptive limiter measured: min (no-load), smoothed, "
        "long (Gradient2's long-term average) and last.",
        labels=["limiter", "estimate"],
    )
    for name, limiter in sorted(limiters.items()):
        stats = limiter.stats()
        for field, family in gauges.items():
            family.add_metric([name], getattr(stats, field))
        for field, counter in counters.items():
            counter.add_metric([name], getattr(stats, field))
        for estimate in ("min", "smoothed", "long", "last"):
            latency.add_metric([name, estimate], getattr(stats, f"{estimate}_rtt"))
    yield from gauges.values()
    yield from counters.values()
    yield latency
