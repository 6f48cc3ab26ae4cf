"""OpenTelemetry: ratefuse's counters as observable instruments, and span
events for refused calls.

Needs the ``otel`` extra (``pip install 'ratefuse[otel]'``: the API only;
the application brings the SDK and exporter it uses)::

    from ratefuse.otel import RatefuseInstruments, instrument

    RatefuseInstruments(registry)   # metrics, read at each collection
    instrument()                    # span events on refusals

`RatefuseInstruments` reports the same counters as the Prometheus
collector of :mod:`ratefuse.metrics` (both read
:func:`ratefuse.telemetry.snapshot`), under ``<namespace>.<group>.<metric>``
(``ratefuse.limiter.decisions``, ``ratefuse.breaker.state``,
``ratefuse.adaptive.limit``, ...), with
the Prometheus labels as attributes. Counters are observable counters,
``limiter.keys`` and ``breaker.state`` observable gauges.

`instrument` adds an event to the current span, when it is recording, each
time a call is refused: ``ratefuse.breaker.rejected`` (attributes
``ratefuse.breaker``, ``ratefuse.retry_after``) when a breaker rejects a
call, ``ratefuse.limit.denied`` (``ratefuse.retry_after``,
``ratefuse.limit``, ``ratefuse.remaining``) when a denial is raised as
RateLimitExceeded. Admitted calls add nothing: their path stays as fast
as without OpenTelemetry, and without `instrument` a refusal costs one
None check.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Final

try:
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "ratefuse.otel needs opentelemetry-api: pip install 'ratefuse[otel]'"
    ) from exc

from ratefuse.core.errors import CircuitOpenError, RateLimitExceeded
from ratefuse.core.span_hooks import ON_DENIED, ON_REJECTED, SPAN_HOOKS
from ratefuse.telemetry import (
    FIXED_FAMILIES,
    Family,
    Sample,
    Sources,
    families_of,
    redis_families,
    snapshot,
)

if TYPE_CHECKING:
    from ratefuse.config import Registry

__all__ = [
    "BREAKER_REJECTED",
    "LIMIT_DENIED",
    "RatefuseInstruments",
    "instrument",
    "uninstrument",
]

BREAKER_REJECTED: Final = "ratefuse.breaker.rejected"
LIMIT_DENIED: Final = "ratefuse.limit.denied"
# The instrumentation scope the meter is named after.
SCOPE: Final = "ratefuse"


class RatefuseInstruments(Sources):
    """`RatefuseInstruments` reports the limiters, breakers and backends of
    ``registry`` (None: none) and those added with `add_limiter`,
    `add_breaker`, `add_backend` and `add_adaptive`, as observable
    instruments of a meter of ``meter_provider`` (None: the global one),
    read at each collection.
    ``namespace`` prefixes every instrument name. The instruments are
    made outside collections (the SDK holds its lock while it collects):
    at construction, the fixed families, the fields of the Redis stats
    records and the families of the objects given; at each `add_*`, the
    families the new object brings. A family first reported by an object
    that a registry reload brought in, of a kind none had before, is not
    reported. Thread-safe."""

    def __init__(
        self,
        registry: Registry | None = None,
        *,
        meter_provider: MeterProvider | None = None,
        namespace: str = "ratefuse",
    ) -> None:
        super().__init__(registry)
        self._prefix = f"{namespace}." if namespace else ""
        self._meter: Meter = metrics.get_meter(SCOPE, meter_provider=meter_provider)
        # The samples of the collection under way: each family's callback
        # takes its own, and the first callback with nothing left reads a
        # new snapshot (so one collection reads the counters once).
        self._pending: dict[str, list[Sample]] = {}
        self._pending_lock = threading.Lock()
        self._instruments_lock = threading.Lock()
        self._instruments: set[str] = set()
        self._ensure([*FIXED_FAMILIES, *redis_families()])
        self._ensure_read()

    def add_limiter(self, name: str, limiter: object) -> None:
        super().add_limiter(name, limiter)
        self._ensure_read()

    def add_breaker(self, name: str, breaker: object) -> None:
        super().add_breaker(name, breaker)
        self._ensure_read()

    def add_backend(self, name: str, backend: object) -> None:
        super().add_backend(name, backend)
        self._ensure_read()

    def add_adaptive(self, name: str, limiter: object) -> None:
        super().add_adaptive(name, limiter)
        self._ensure_read()

    def _ensure_read(self) -> None:
        # The instruments of the families the objects report now.
        self._ensure(
            [group[0].family for group in families_of(snapshot(self)).values()]
        )

    def _ensure(self, families: Iterable[Family]) -> None:
        with self._instruments_lock:
            for family in families:
                if family.name not in self._instruments:
                    self._instruments.add(family.name)
                    self._create(family)

    def _create(self, family: Family) -> None:
        create = (
            self._meter.create_observable_gauge
            if family.kind == "gauge"
            else self._meter.create_observable_counter
        )
        create(
            f"{self._prefix}{family.otel_name}",
            callbacks=[self._callback(family.name)],
            description=family.documentation,
        )

    def _callback(
        self, name: str
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return self._observe(name)

        return observe

    def _observe(self, name: str) -> list[Observation]:
        with self._pending_lock:
            if name not in self._pending:
                fresh = families_of(snapshot(self))
                with self._instruments_lock:
                    names = set(self._instruments)
                self._pending = {family: fresh.get(family, []) for family in names}
            samples = self._pending.pop(name, [])
        return [
            Observation(
                sample.value,
                dict(zip(sample.family.labels, sample.labels, strict=True)),
            )
            for sample in samples
        ]


def _rejected(error: CircuitOpenError) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(
            BREAKER_REJECTED,
            {"ratefuse.breaker": error.name, "ratefuse.retry_after": error.retry_after},
        )


def _denied(error: RateLimitExceeded) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        decision = error.decision
        span.add_event(
            LIMIT_DENIED,
            {
                # inf (never admitted) is not a valid attribute value for
                # every exporter: -1 says "never".
                "ratefuse.retry_after": -1.0
                if math.isinf(error.retry_after)
                else error.retry_after,
                "ratefuse.limit": decision.limit,
                "ratefuse.remaining": decision.remaining,
            },
        )


def instrument() -> None:
    """`instrument` makes every breaker rejection and raised rate-limit
    denial add an event to the current span when it is recording (see the
    module doc), for the whole process."""
    SPAN_HOOKS[ON_REJECTED] = _rejected
    SPAN_HOOKS[ON_DENIED] = _denied


def uninstrument() -> None:
    """`uninstrument` removes what `instrument` installed."""
    SPAN_HOOKS[ON_REJECTED] = None
    SPAN_HOOKS[ON_DENIED] = None
