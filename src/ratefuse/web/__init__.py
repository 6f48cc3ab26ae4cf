"""Where requests are: rate-limit middleware for ASGI and WSGI apps, and
httpx transports that guard calls to upstream hosts.

The middlewares need nothing beyond ratefuse; ``ratefuse.web.client`` needs
the ``httpx`` extra and is imported on first use of its names.
"""

from __future__ import annotations

from typing import Any

from ratefuse.web.asgi import RateLimitMiddleware
from ratefuse.web.enforce import Outcome
from ratefuse.web.headers import HEADER_MODES, HEADERS_ON
from ratefuse.web.keys import (
    CLIENT_ADDRESS,
    PATH,
    KeyFunction,
    forwarded_for,
    header,
    user,
)
from ratefuse.web.rules import MATCH_KINDS, Limit, Route
from ratefuse.web.wsgi import RateLimitWSGIMiddleware

__all__ = [
    "CLIENT_ADDRESS",
    "HEADERS_ON",
    "HEADER_MODES",
    "MATCH_KINDS",
    "PATH",
    "AsyncGuardedTransport",
    "GuardedTransport",
    "KeyFunction",
    "Limit",
    "Outcome",
    "RateLimitMiddleware",
    "RateLimitWSGIMiddleware",
    "Route",
    "forwarded_for",
    "header",
    "user",
]


def __getattr__(name: str) -> Any:
    # httpx is an optional extra: import the transports only when asked.
    if name in ("GuardedTransport", "AsyncGuardedTransport"):
        from ratefuse.web import client

        return getattr(client, name)
    raise AttributeError(f"module 'ratefuse.web' has no attribute {name!r}")
