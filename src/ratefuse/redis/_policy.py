"""The failure policy: what a Redis-backed limiter answers when Redis can't.

``on_backend_error`` is one of:

- ``"deny"`` (the default): refuse (remaining 0, retry_after the breaker's
  remaining wait when it is open, else ``deny_retry_after``). The only
  policy that never admits more than the fleet's quota;
- ``"local"``: a local limiter per key at ``local_share`` of the quota
  answers, on the local clock. Every process admits its share, so the fleet
  admits up to processes x local_share of the quota: set ``local_share`` to
  about 1 / the number of processes sharing the quota;
- ``"allow"``: admit (remaining 0, retry_after and reset_after 0.0);
- ``"raise"``: raise BackendError, with the cause chained.

Every decision answered by the policy is counted in :class:`LimiterStats`.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ratefuse.core.backend_defaults import (
    DEFAULT_ON_BACKEND_ERROR,
    POLICIES,
    PolicyName,
)
from ratefuse.core.errors import BackendError, CircuitOpenError
from ratefuse.engine.log_events import REDIS_LOGGER, LogEvent, emit
from ratefuse.engine.subject import Decision
from ratefuse.rates import Rate
from ratefuse.redis._local import local_limiter

DEFAULT_LOCAL_SHARE: Final = 1.0
DEFAULT_LOCAL_MAX_KEYS: Final = 100_000
DEFAULT_DENY_RETRY_AFTER: Final = 1.0


@dataclass(frozen=True)
class FailurePolicy:
    """`FailurePolicy` says how decisions Redis cannot make are answered.

    on_backend_error: "deny" (default), "local", "allow" or "raise".
    local_share: share of each limit the "local" fallback admits in each
        process, in (0, 1]; 1.0 (default) lets every process admit the
        whole quota alone, so set it to about 1 / the number of processes.
    local_max_keys: keys the local fallback remembers, >= 1; the least
        recently used is evicted beyond it.
    deny_retry_after: seconds a "deny" answer tells callers to wait when
        the breaker is not open, > 0.
    """

    on_backend_error: PolicyName = DEFAULT_ON_BACKEND_ERROR
    local_share: float = DEFAULT_LOCAL_SHARE
    local_max_keys: int = DEFAULT_LOCAL_MAX_KEYS
    deny_retry_after: float = DEFAULT_DENY_RETRY_AFTER

    def __post_init__(self) -> None:
        if self.on_backend_error not in POLICIES:
            raise ValueError(
                f"on_backend_error must be one of {', '.join(POLICIES)}, "
                f"got {self.on_backend_error!r}"
            )
        share = self.local_share
        if isinstance(share, bool) or not isinstance(share, (int, float)):
            raise ValueError(f"local_share must be a number, got {share!r}")
        if not 0 < share <= 1:
            raise ValueError(f"local_share must be in (0, 1], got {share!r}")
        keys = self.local_max_keys
        if isinstance(keys, bool) or not isinstance(keys, int) or keys < 1:
            raise ValueError(f"local_max_keys must be an int >= 1, got {keys!r}")
        wait = self.deny_retry_after
        if isinstance(wait, bool) or not isinstance(wait, (int, float)):
            raise ValueError(f"deny_retry_after must be a number, got {wait!r}")
        if not 0 < wait < math.inf:
            raise ValueError(f"deny_retry_after must be finite and > 0, got {wait!r}")


def failure_policy(
    on_backend_error: PolicyName | None = None,
    local_share: float | None = None,
    local_max_keys: int = DEFAULT_LOCAL_MAX_KEYS,
) -> FailurePolicy:
    """`failure_policy` is the FailurePolicy of a limiter's arguments, where
    None means not given: a ``local_share`` given without a policy chooses
    "local" at that share (a share is the choice of how far the fleet may
    exceed its quota); neither given is DEFAULT_ON_BACKEND_ERROR."""
    if on_backend_error is None:
        on_backend_error = DEFAULT_ON_BACKEND_ERROR if local_share is None else "local"
    if local_share is None:
        local_share = DEFAULT_LOCAL_SHARE
    return FailurePolicy(on_backend_error, local_share, local_max_keys)


@dataclass(frozen=True)
class LimiterStats:
    """`LimiterStats` is a snapshot of a Redis-backed limiter's counters.

    decisions: decisions answered, by Redis or by the policy.
    backend_decisions: decisions Redis made.
    fallbacks: decisions Redis could not make: local_fallbacks +
        allow_fallbacks + deny_fallbacks (answered by the policy) + raised
        (BackendErrors raised by the "raise" policy).
    breaker_fallbacks: fallbacks because the breaker was open (no I/O).
    local_evictions: keys the local fallback table evicted.
    deny_cache_hits: denials answered by the deny cache (no I/O).
    lease_hits: decisions admitted from a lease's local units (no I/O).
    lease_denials: decisions denied locally in lease mode: the lease was
        short and the fleet's bucket was drained when last asked.
    lease_grants: leases the fleet granted (at least one unit).
    lease_units_granted: units those leases took from the fleet.
    lease_units_expired: leased units that expired unused.
    lease_refill_failures: background refills Redis could not answer.
    cache_evictions: keys the deny cache / lease table evicted (leased
        units of an evicted key are dropped, never over-admitted).
    redis_commands: decisions and leases this limiter sent to Redis,
        answered or not (a batch counts its decisions; a breaker rejection
        sends none).
    """

    decisions: int = 0
    backend_decisions: int = 0
    fallbacks: int = 0
    local_fallbacks: int = 0
    allow_fallbacks: int = 0
    deny_fallbacks: int = 0
    raised: int = 0
    breaker_fallbacks: int = 0
    local_evictions: int = 0
    deny_cache_hits: int = 0
    lease_hits: int = 0
    lease_denials: int = 0
    lease_grants: int = 0
    lease_units_granted: int = 0
    lease_units_expired: int = 0
    lease_refill_failures: int = 0
    cache_evictions: int = 0
    redis_commands: int = 0


_logger: Final = logging.getLogger(REDIS_LOGGER)

_COUNTS: Final = ("backend", "local", "allow", "deny", "raise", "breaker")


class Fallback:
    """`Fallback` applies a FailurePolicy for the limiter named ``name`` and
    counts. It logs ``backend.fallback`` at the first decision Redis could
    not make and ``backend.recovered`` at the first it made after that (one
    record per outage, not one per decision). Thread-safe.
    """

    def __init__(
        self,
        policy: FailurePolicy,
        rates: Sequence[Rate],
        algorithm: str,
        name: str = "",
    ) -> None:
        self.policy = policy
        self.name = name
        # True between a fallback and the next decision Redis made.
        self._degraded = False
        self._kind = policy.on_backend_error
        self._limit = rates[0].capacity
        self._local = (
            local_limiter(rates, algorithm, policy.local_share, policy.local_max_keys)
            if self._kind == "local"
            else None
        )
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTS, 0)

    def answered(self, count: int = 1) -> None:
        """`answered` counts ``count`` decisions that Redis made."""
        with self._lock:
            self._counts["backend"] += count
            recovered = self._degraded and count > 0
            if recovered:
                self._degraded = False
        if recovered:
            emit(
                _logger,
                logging.WARNING,
                LogEvent.BACKEND_RECOVERED,
                "limiter %r: Redis decides again",
                self.name,
                limiter=self.name,
                backend="redis",
            )

    def decide(self, tag: bytes, cost: int, error: BaseException) -> Decision:
        """`decide` answers ``cost`` for the key named ``tag`` after
        ``error`` (BackendError, or CircuitOpenError from the breaker);
        raises BackendError under the "raise" policy."""
        kind = self._kind
        with self._lock:
            self._counts[kind] += 1
            if isinstance(error, CircuitOpenError):
                self._counts["breaker"] += 1
            entered = not self._degraded
            self._degraded = True
        if entered:
            emit(
                _logger,
                logging.WARNING,
                LogEvent.BACKEND_FALLBACK,
                "limiter %r: Redis cannot decide (%s); the %r policy answers",
                self.name,
                error,
                kind,
                limiter=self.name,
                backend="redis",
                policy=kind,
                error=f"{type(error).__name__}: {error}",
            )
        if kind == "local":
            assert self._local is not None
            return self._local.decide(tag, cost)
        if kind == "allow":
            return Decision(True, 0, 0.0, 0.0, self._limit)
        if kind == "deny":
            wait = self.policy.deny_retry_after
            if isinstance(error, CircuitOpenError) and error.retry_after > 0:
                wait = error.retry_after
            return Decision(False, 0, wait, 0.0, self._limit)
        if isinstance(error, BackendError):
            raise error
        unavailable = BackendError(f"Redis backend unavailable: {error}")
        if isinstance(error, CircuitOpenError):
            # The open node breaker knows when Redis will be asked again.
            unavailable.retry_after = error.retry_after
        raise unavailable from error

    def reset(self, tag: bytes) -> None:
        """`reset` forgets the local state of the key named ``tag``."""
        if self._local is not None:
            self._local.reset(tag)

    def stats(self) -> LimiterStats:
        """`stats` snapshots the counters."""
        with self._lock:
            counts = dict(self._counts)
        fallbacks = counts["local"] + counts["allow"] + counts["deny"] + counts["raise"]
        return LimiterStats(
            decisions=counts["backend"] + fallbacks - counts["raise"],
            backend_decisions=counts["backend"],
            fallbacks=fallbacks,
            local_fallbacks=counts["local"],
            allow_fallbacks=counts["allow"],
            deny_fallbacks=counts["deny"],
            raised=counts["raise"],
            breaker_fallbacks=counts["breaker"],
            local_evictions=0
            if self._local is None
            else self._local.stats()["evictions"],
        )
