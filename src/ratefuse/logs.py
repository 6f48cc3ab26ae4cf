"""ratefuse's log records: stable logger names, stable event names, and a
sampled log of denials that a flood of denials cannot flood.

Every record is a stdlib `logging` record; its ``extra`` holds
``event_name`` and the fields below (a key only as ``key_hash`` unless
`set_key_logging` says otherwise):

=====================  ==================  =======  ==================================
event_name             logger              level    fields
=====================  ==================  =======  ==================================
breaker.transition     ratefuse.breaker    INFO     breaker, old_state, state
backend.fallback       ratefuse.redis      WARNING  limiter or breaker, backend,
                                                    policy, error
backend.recovered      ratefuse.redis      WARNING  limiter or breaker, backend
config.reloaded        ratefuse.config     INFO     source, limiters, breakers, backends
config.rejected        ratefuse.config     ERROR    source, error
lease.anomaly          ratefuse.lease      WARNING  limiter, anomaly, reply,
                                                    units_asked, key_hash
deny_cache.anomaly     ratefuse.lease      WARNING  limiter, anomaly, reply, key_hash
limit.denied           ratefuse.denials    INFO     limiter, retry_after, cost,
                                                    suppressed, key_hash
=====================  ==================  =======  ==================================

``backend.fallback`` is logged once per outage (the first decision Redis
could not make), ``backend.recovered`` at the first decision it made after.
``limit.denied`` is opt-in: wrap a limiter with `log_denials` (or call
`DenialLog.denied`, e.g. from the web middleware's ``on_denied``); a plain
limiter's ``try_acquire`` never logs.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any, Final

from ratefuse.engine.log_events import (
    BREAKER_LOGGER,
    CONFIG_LOGGER,
    DENIALS_LOGGER,
    LEASE_LOGGER,
    REDIS_LOGGER,
    KeyLogging,
    LogEvent,
    emit,
    key_field,
    log_transition,
    set_key_logging,
)
from ratefuse.keyed import KeyedLimiter
from ratefuse.protocols import KeyedRateLimiter
from ratefuse.rates import Rate

__all__ = [
    "BREAKER_LOGGER",
    "CONFIG_LOGGER",
    "DEFAULT_DENIAL_INTERVAL",
    "DEFAULT_DENIAL_RECORDS",
    "DENIALS_LOGGER",
    "LEASE_LOGGER",
    "REDIS_LOGGER",
    "DenialLog",
    "KeyLogging",
    "LogEvent",
    "LoggedLimiter",
    "log_denials",
    "log_transition",
    "set_key_logging",
]

DEFAULT_DENIAL_RECORDS: Final = 10
DEFAULT_DENIAL_INTERVAL: Final = 60.0
# Limiter names whose sampling state is kept; the oldest idle one goes
# beyond this (its suppressed count is then reported as 0).
DEFAULT_MAX_LIMITERS: Final = 10_000


class DenialLog:
    """`DenialLog` logs ``limit.denied`` records, at most ``records`` per
    ``per`` seconds for each limiter name (a fixed window of ratefuse's own
    KeyedLimiter, on ``clock``: integer ns, None monotonic); each record
    carries ``suppressed``, the denials of that limiter not logged since
    its previous record. ``logger`` defaults to ``ratefuse.denials``;
    ``level`` to INFO. When the logger is not enabled for ``level`` a
    denial costs one ``isEnabledFor`` call and is not counted.
    Thread-safe."""

    def __init__(
        self,
        records: int = DEFAULT_DENIAL_RECORDS,
        per: float = DEFAULT_DENIAL_INTERVAL,
        *,
        logger: logging.Logger | None = None,
        level: int = logging.INFO,
        clock: Callable[[], int] | None = None,
        max_limiters: int = DEFAULT_MAX_LIMITERS,
    ) -> None:
        if isinstance(records, bool) or not isinstance(records, int) or records < 1:
            raise ValueError(f"records must be an int >= 1, got {records!r}")
        if isinstance(per, bool) or not isinstance(per, (int, float)):
            raise ValueError(f"per must be a number of seconds, got {per!r}")
        if not 0 < per < math.inf:
            raise ValueError(f"per must be finite and > 0 seconds, got {per!r}")
        if isinstance(level, bool) or not isinstance(level, int):
            raise TypeError(f"level must be a logging level (int), got {level!r}")
        self.logger = logging.getLogger(DENIALS_LOGGER) if logger is None else logger
        self.level = level
        self._gate = KeyedLimiter(
            Rate(records, float(per)),
            "fixed_window",
            max_keys=max_limiters,
            clock=clock,
        )
        self._lock = threading.Lock()
        self._suppressed: dict[str, int] = {}
        self._max_limiters = max_limiters

    def denied(
        self,
        limiter: str,
        retry_after: float | None = None,
        *,
        key: object = None,
        cost: int = 1,
    ) -> bool:
        """`denied` reports a denial by the limiter named ``limiter``
        (``retry_after`` None: unknown; ``key`` logged per
        `set_key_logging`) and is true if it was logged, false if it was
        sampled out (counted in the next record's ``suppressed``) or the
        logger is off."""
        if not self.logger.isEnabledFor(self.level):
            return False
        if not self._gate.try_acquire(limiter):
            with self._lock:
                counts = self._suppressed
                counts[limiter] = counts.pop(limiter, 0) + 1
                if len(counts) > self._max_limiters:
                    del counts[next(iter(counts))]
            return False
        with self._lock:
            suppressed = self._suppressed.pop(limiter, 0)
        emit(
            self.logger,
            self.level,
            LogEvent.LIMIT_DENIED,
            "limiter %r denied cost %d (retry after %s s; %d similar not logged)",
            limiter,
            cost,
            "?" if retry_after is None else f"{retry_after:.3f}",
            suppressed,
            limiter=limiter,
            retry_after=retry_after,
            cost=cost,
            suppressed=suppressed,
            **key_field(key),
        )
        return True


class LoggedLimiter:
    """`LoggedLimiter` is ``limiter`` (in memory, Redis, keyed or not) whose
    ``try_acquire`` and ``decide`` denials are reported to ``log`` under
    ``name``; every other attribute is the limiter's. A keyed limiter's
    first argument is the key. ``try_acquire`` knows no retry_after (the
    record says None); ``decide`` does. Thread-safe as the limiter is."""

    def __init__(self, limiter: Any, name: str, log: DenialLog | None = None) -> None:
        self.limiter = limiter
        self.name = name
        self.log = DenialLog() if log is None else log
        self._keyed = isinstance(limiter, KeyedRateLimiter)
        # Checked before the denial's fields are gathered: a denial costs
        # one isEnabledFor call while the logger is off.
        self._logger, self._level = self.log.logger, self.log.level

    def try_acquire(self, *args: Any, **kwargs: Any) -> bool:
        """`try_acquire` is the limiter's, and logs a denial."""
        allowed: bool = self.limiter.try_acquire(*args, **kwargs)
        if not allowed and self._logger.isEnabledFor(self._level):
            self._denied(None, args, kwargs)
        return allowed

    def decide(self, *args: Any, **kwargs: Any) -> Any:
        """`decide` is the limiter's, and logs a denial with its
        retry_after."""
        decision = self.limiter.decide(*args, **kwargs)
        if not decision.allowed and self._logger.isEnabledFor(self._level):
            self._denied(decision.retry_after, args, kwargs)
        return decision

    def _denied(
        self, retry_after: float | None, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        key = (args[0] if args else kwargs.get("key")) if self._keyed else None
        position = 1 if self._keyed else 0
        cost = args[position] if len(args) > position else kwargs.get("cost", 1)
        self.log.denied(self.name, retry_after, key=key, cost=cost)

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self.limiter, attribute)

    def __repr__(self) -> str:
        return f"<LoggedLimiter {self.name!r} {self.limiter!r}>"


def log_denials(limiter: Any, name: str, log: DenialLog | None = None) -> LoggedLimiter:
    """`log_denials` is ``limiter`` with its denials logged as
    ``limit.denied`` under ``name`` by ``log`` (None: a DenialLog with the
    defaults, 10 records a minute); see :class:`LoggedLimiter`."""
    return LoggedLimiter(limiter, name, log)
