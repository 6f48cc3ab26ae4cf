"""ratefuse: rate limiters and circuit breakers with a compiled decide step.

``IMPLEMENTATION`` is "cython" when the compiled cores are in use and
"python" when the pure-Python reference cores are (see ``ratefuse._impl``).
"""

from __future__ import annotations

from ._breaker_spec import IllegalTransitionError
from ._counters import BreakerCounters, LimiterCounters
from ._engine import Decision
from ._impl import IMPLEMENTATION
from ._waiting import Reservation
from .breaker import BreakerConfig, BreakerMetrics, CircuitBreaker
from .breaker import State as BreakerState
from .bulkhead import Bulkhead, BulkheadFullError
from .errors import BackendError, CircuitOpenError, RatefuseError, RateLimitExceeded
from .keyed import KeyedLimiter
from .limiter import Limiter
from .rates import ALGORITHMS, Rate, parse

__version__ = "0.1.0"

__all__ = [
    "ALGORITHMS",
    "IMPLEMENTATION",
    "BackendError",
    "BreakerConfig",
    "BreakerCounters",
    "BreakerMetrics",
    "BreakerState",
    "Bulkhead",
    "BulkheadFullError",
    "CircuitBreaker",
    "CircuitOpenError",
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
    "parse",
]
