"""The exceptions ratefuse raises (the public path of
:mod:`ratefuse.core.errors`, where they are defined so that every layer can
raise them)."""

from ratefuse.core.errors import (
    BackendError,
    CircuitOpenError,
    RatefuseError,
    RateLimitExceeded,
)

__all__ = ["BackendError", "CircuitOpenError", "RateLimitExceeded", "RatefuseError"]
