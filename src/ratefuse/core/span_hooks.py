"""`SPAN_HOOKS` holds the callbacks that report a refusal to the current
trace: ``SPAN_HOOKS[ON_DENIED](RateLimitExceeded)`` when a denial is raised
to a caller, ``SPAN_HOOKS[ON_REJECTED](CircuitOpenError)`` when a breaker
rejects a call. Both are None (one check on the refusal path, never on an
admitted call) until :func:`ratefuse.otel.instrument` installs them;
nothing in ratefuse imports OpenTelemetry otherwise. A hook must not
raise.

A list rather than an object with attributes: the compiled breaker reads
it by index in C, a few ns, where an attribute read costs about as much
again as the rest of an OPEN breaker's rejection. Its argument is typed
Any because core.errors imports this module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

__all__ = ["ON_DENIED", "ON_REJECTED", "SPAN_HOOKS", "SpanHook"]

SpanHook = Callable[[Any], object]

ON_DENIED: Final = 0
ON_REJECTED: Final = 1
SPAN_HOOKS: Final[list[SpanHook | None]] = [None, None]
