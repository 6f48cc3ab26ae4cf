"""`SPAN_HOOKS` holds the callbacks that report a refusal to the current
trace: ``denied(RateLimitExceeded)`` when a denial is raised to a caller,
``rejected(CircuitOpenError)`` when a breaker rejects a call. Both are
None (a single check on the refusal path, never on an admitted call)
until :func:`ratefuse.otel.instrument` installs them; nothing in ratefuse
imports OpenTelemetry otherwise. A hook must not raise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["SPAN_HOOKS", "SpanHooks"]


class SpanHooks:
    """`SpanHooks` is the pair of refusal callbacks (None: not traced);
    their argument is typed Any because core.errors imports this module."""

    __slots__ = ("denied", "rejected")

    def __init__(self) -> None:
        self.denied: Callable[[Any], object] | None = None
        self.rejected: Callable[[Any], object] | None = None


SPAN_HOOKS = SpanHooks()
