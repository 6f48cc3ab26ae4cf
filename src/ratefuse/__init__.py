"""ratefuse: rate limiters and circuit breakers with a compiled decide step.

``IMPLEMENTATION`` is "cython" when the compiled cores are in use and
"python" when the pure-Python reference cores are (see
:mod:`ratefuse.core.implementation`).
"""

from __future__ import annotations

from ratefuse.adaptive import AdaptiveLimiter, AdaptiveLimitFullError
from ratefuse.breaker import BreakerConfig, BreakerMetrics, CircuitBreaker
from ratefuse.breaker import State as BreakerState
from ratefuse.bulkhead import Bulkhead, BulkheadFullError
from ratefuse.core.breaker.spec import IllegalTransitionError
from ratefuse.core.counters import BreakerCounters, LimiterCounters
from ratefuse.core.errors import (
    BackendError,
    CallTimeout,
    CircuitOpenError,
    DeadlineExceeded,
    RatefuseError,
    RateLimitExceeded,
)
from ratefuse.core.implementation import IMPLEMENTATION
from ratefuse.core.reservation import Reservation
from ratefuse.engine.deadline import Deadline, deadline, remaining
from ratefuse.engine.subject import Decision
from ratefuse.keyed import KeyedLimiter
from ratefuse.limiter import Limiter
from ratefuse.rates import ALGORITHMS, Rate, parse

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "IMPLEMENTATION",
    "AdaptiveLimitFullError",
    "AdaptiveLimiter",
    "BackendError",
    "BreakerConfig",
    "BreakerCounters",
    "BreakerMetrics",
    "BreakerState",
    "Bulkhead",
    "BulkheadFullError",
    "CallTimeout",
    "CircuitBreaker",
    "CircuitOpenError",
    "Deadline",
    "DeadlineExceeded",
    "Decision",
    "IllegalTransitionError",
    "KeyedLimiter",
    "Limiter",
    "LimiterCounters",
    "Rate",
    "RateLimitExceeded",
    "RatefuseError",
    "Reservation",
    "__version__",
    "deadline",
    "parse",
    "remaining",
]
