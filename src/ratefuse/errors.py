"""The exceptions ratefuse raises; all derive from :class:`RatefuseError`."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._engine import Decision


class RatefuseError(Exception):
    """`RatefuseError` is the base of every error ratefuse raises on purpose."""


class RateLimitExceeded(RatefuseError):
    """`RateLimitExceeded` reports a denied decision; ``decision`` says why.

    ``retry_after`` (float seconds, ``inf`` when the cost can never be
    admitted) is copied from the decision for convenience.
    """

    def __init__(self, decision: Decision, message: str | None = None) -> None:
        self.decision = decision
        self.retry_after = decision.retry_after
        super().__init__(
            message
            or f"rate limit exceeded: retry after {decision.retry_after:.6g}s "
            f"(limit {decision.limit})"
        )


class CircuitOpenError(RatefuseError):
    """`CircuitOpenError` reports a call rejected by an open breaker.

    ``retry_after`` is the float seconds until the breaker lets a probe
    through; ``name`` names the breaker.
    """

    def __init__(self, name: str, retry_after: float) -> None:
        self.name = name
        self.retry_after = retry_after
        super().__init__(
            f"circuit breaker {name!r} is open: retry after {retry_after:.6g}s"
        )


class BackendError(RatefuseError):
    """`BackendError` reports a shared backend (Redis, shared memory) failure.

    Raised only where the limiter's ``on_backend_error`` policy says to raise.
    """
