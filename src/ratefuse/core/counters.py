"""Counter snapshots of the cores, read at scrape time.

The cores keep plain integer counters next to their state and bump them in
the decide step (a couple of integer additions, no lock beyond the one the
decision already holds); `counters()` copies them into these frozen
snapshots. Counters only grow: they survive `reset` and `reconfigure`, as
Prometheus counters must.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LimiterCounters:
    """`LimiterCounters` counts a limiter's verdicts since construction.

    ``allowed`` and ``denied`` count every verdict of try_acquire, decide,
    decide_many (one per key), reserve and acquire (an acquire that has to
    wait counts each reservation it asks for). Cost 0 asks count too.
    """

    allowed: int
    denied: int

    @property
    def decisions(self) -> int:
        """`decisions` is ``allowed + denied``."""
        return self.allowed + self.denied


@dataclass(frozen=True)
class BreakerCounters:
    """`BreakerCounters` counts a breaker's traffic since construction.

    ``permitted``: permits issued (calls let through); ``rejected``: calls
    refused while OPEN, FORCED_OPEN or with the probe round full;
    ``successes`` and ``failures``: outcomes recorded (ignored exceptions and
    outcomes of a stale generation are not); ``slow``: recorded calls slower
    than ``slow_call_duration``; ``transitions``: state changes into each
    state, indexed by :class:`ratefuse.BreakerState` value (CLOSED, OPEN,
    HALF_OPEN, FORCED_OPEN, DISABLED). Unlike ``BreakerMetrics.rejected_calls``
    these never go back to 0, not even on `reset`.
    """

    permitted: int
    successes: int
    failures: int
    slow: int
    rejected: int
    transitions: tuple[int, int, int, int, int]
