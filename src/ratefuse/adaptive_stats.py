"""The records of :class:`ratefuse.adaptive.AdaptiveLimiter`: its refusal
(`AdaptiveLimitFullError`, a BulkheadFullError) and its stats."""

from __future__ import annotations

from dataclasses import dataclass

from ratefuse.bulkhead import BulkheadFullError
from ratefuse.core.errors import RatefuseError


class AdaptiveLimitFullError(BulkheadFullError):
    """`AdaptiveLimitFullError` reports a call rejected by an adaptive limit
    at its current ``limit`` after waiting ``max_wait`` seconds. It is a
    BulkheadFullError, so code written for a Bulkhead handles it."""

    def __init__(self, name: str, limit: int, max_wait: float) -> None:
        self.name = name
        self.max_concurrent = limit
        self.max_wait = max_wait
        RatefuseError.__init__(
            self,
            f"adaptive limit {name!r} is full: {limit} calls running, "
            f"none finished within {max_wait:.6g}s",
        )


@dataclass(frozen=True, slots=True)
class AdaptiveStats:
    """`AdaptiveStats` is a snapshot of an adaptive limit. Times are float
    seconds, 0.0 before the first sample: ``min_rtt`` the least latency
    seen (Vegas: since its last probe), ``smoothed_rtt`` the recent one,
    ``long_rtt`` Gradient2's long-term average (0.0 for the others),
    ``last_rtt`` the last call's. ``samples`` and ``drops`` count the calls
    fed to the algorithm, ``rejected`` the calls refused."""

    name: str
    algorithm: str
    limit: int
    in_flight: int
    waiting: int
    rejected: int
    samples: int
    drops: int
    min_rtt: float
    smoothed_rtt: float
    long_rtt: float
    last_rtt: float
