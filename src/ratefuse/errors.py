"""The exceptions ratefuse raises (the public path of
:mod:`ratefuse.core.errors`, where they are defined so that every layer can
raise them)."""

from ratefuse.core.errors import (
    BackendError,
    BulkheadFullError,
    CallTimeout,
    CircuitOpenError,
    DeadlineExceeded,
    RatefuseError,
    RateLimitExceeded,
)

__all__ = [
    "BackendError",
    "BulkheadFullError",
    "CallTimeout",
    "CircuitOpenError",
    "DeadlineExceeded",
    "RateLimitExceeded",
    "RatefuseError",
]
