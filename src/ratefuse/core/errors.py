"""The exceptions ratefuse raises; all derive from :class:`RatefuseError`."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ratefuse.core.span_hooks import ON_DENIED, SPAN_HOOKS

if TYPE_CHECKING:
    from ratefuse.core.decision import Decision


class RatefuseError(Exception):
    """`RatefuseError` is the base of every error ratefuse raises on purpose.

    Every error after which a caller could retry has ``retry_after``: the
    seconds after which the same call may succeed where the error can tell
    (a rate limit's wait, an open breaker's time to its probe), None where
    it cannot (a full bulkhead, a backend failure, a call timeout); a retry
    then waits by its own rule.
    """


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
    ``retry_after`` is None: a failure does not say when it ends.
    """

    retry_after: float | None = None


class DeadlineExceeded(RatefuseError, TimeoutError):
    """`DeadlineExceeded` reports a wait refused because it cannot fit the
    time left before the running call's deadline (``ratefuse.deadline``).

    It is neither a rate-limit denial nor a full bulkhead: the call ran
    out of time, so retrying within the same deadline cannot help (the
    retry helpers stop on it). It is a ``TimeoutError``, as asyncio's own
    timeouts are. ``what`` names the wait ("acquire", "bulkhead",
    "retry"); ``needed`` is the seconds the wait needed (None: unknown);
    ``remaining`` the seconds left when it was refused; ``retry_after``
    (seconds, or None) is when the refused step could succeed, for a caller
    with a new budget. The refusal the deadline turned into this error, if
    any, is its ``__cause__``.
    """

    def __init__(
        self,
        what: str,
        needed: float | None,
        remaining: float,
        retry_after: float | None = None,
    ) -> None:
        self.what = what
        self.needed = needed
        self.remaining = remaining
        self.retry_after = retry_after
        wanted = "" if needed is None else f" needs {needed:.6g}s,"
        super().__init__(
            f"deadline exceeded: {what}{wanted} {remaining:.6g}s left of the budget"
        )

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        # Pickled by its fields (the message alone cannot rebuild it).
        return (type(self), (self.what, self.needed, self.remaining, self.retry_after))


class CallTimeout(RatefuseError, TimeoutError):
    """`CallTimeout` reports a guarded call that did not finish within its
    ``timeout`` seconds (the breaker's ``timeout=``); ``name`` names the
    breaker. A sync call goes on running in its worker thread and its
    result is dropped; an asyncio call was cancelled. ``retry_after`` is
    None: nothing says when the callee will be faster.
    """

    retry_after: float | None = None

    def __init__(self, name: str, timeout: float) -> None:
        self.name = name
        self.timeout = timeout
        super().__init__(
            f"call through circuit breaker {name!r} timed out after {timeout:.6g}s"
        )

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        # Pickled by its fields (the message alone cannot rebuild it).
        return (type(self), (self.name, self.timeout))


class BulkheadFullError(RatefuseError):
    """`BulkheadFullError` reports a call rejected by a full bulkhead after
    waiting ``max_wait`` seconds; ``name`` names the bulkhead (or the
    time limiter's executor, full of running and abandoned calls).
    ``retry_after`` is None: a bulkhead cannot tell when a call ends."""

    retry_after: float | None = None

    def __init__(self, name: str, max_concurrent: int, max_wait: float) -> None:
        self.name = name
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        super().__init__(
            f"bulkhead {name!r} is full: {max_concurrent} calls running, "
            f"none finished within {max_wait:.6g}s"
        )
