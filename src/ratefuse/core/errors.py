"""The exceptions ratefuse raises; all derive from :class:`RatefuseError`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ratefuse.core.span_hooks import ON_DENIED, SPAN_HOOKS

if TYPE_CHECKING:
    from ratefuse.core.decision import Decision


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
        if message is None and math.isinf(decision.retry_after):
            message = (
                "rate limit exceeded: the cost can never be admitted, it is "
                f"above the capacity {decision.limit}"
            )
        super().__init__(
            message
            or f"rate limit exceeded: retry after {decision.retry_after:.6g}s "
            f"(limit {decision.limit})"
        )
        hook = SPAN_HOOKS[ON_DENIED]
        if hook is not None:
            hook(self)


class CircuitOpenError(RatefuseError):
    """`CircuitOpenError` reports a call rejected by an open breaker.

    ``retry_after`` is the float seconds until the breaker lets a probe
    through; ``name`` names the breaker.
    """

    # The args are (name, retry_after) and the message is formatted only
    # when asked for: an open breaker raises this on its hot path, and
    # formatting a float costs more than the rest of the rejection. Without
    # a Python __init__, construction runs in C (BaseException's).
    if TYPE_CHECKING:

        def __init__(self, name: str, retry_after: float) -> None: ...

    @property
    def name(self) -> str:
        """`name` names the breaker."""
        name: str = self.args[0]
        return name

    @property
    def retry_after(self) -> float:
        """`retry_after` is the seconds until a probe may go through."""
        retry_after: float = self.args[1]
        return retry_after

    def __str__(self) -> str:
        return (
            f"circuit breaker {self.name!r} is open: "
            f"retry after {self.retry_after:.6g}s"
        )


class BackendError(RatefuseError):
    """`BackendError` reports a shared backend (Redis, shared memory) failure.

    Raised only where the limiter's ``on_backend_error`` policy says to raise.
    """
