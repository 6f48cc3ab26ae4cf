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
(``ratefuse.limiter.decisions``, ``ratefuse.breaker.state``, ...), with
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
    `add_breaker` and `add_backend`, as observable instruments of a meter
    of ``meter_provider`` (None: the global one), read at each collection.
    ``namespace`` prefixes every instrument name. The instruments are
    made at construction: the fixed families, the fields of the Redis
    stats records, and the fields of any other stats record the objects
    already given report (one added later reports only the fields known
    then). Thread-safe."""

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
        # Instruments cannot be created while the SDK collects (it holds its
        # lock then): every family is known now, the fixed ones, the Redis
        # stats fields, and those of the objects already given.
        families = {family.name: family for family in FIXED_FAMILIES}
        families.update({family.name: family for family in redis_families()})
        for name, group in families_of(snapshot(self)).items():
            families.setdefault(name, group[0].family)
        self._instruments = frozenset(families)
        for family in families.values():
            self._create(family)

    def _create(self, family: Family) -> None:
        create = (
            self._meter.create_observable_gauge
            if family.kind == "gauge"
            else self._meter.create_observable_counter
        )
        create(
            f"{self._prefix}{family.group}.{family.metric}",
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
                self._pending = {
                    family: fresh.get(family, []) for family in self._instruments
                }
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
