"""The rate-limit response headers, rendered once per policy where possible.

``RateLimit-Policy`` and ``RateLimit`` follow the IETF httpapi draft
(draft-ietf-httpapi-ratelimit-headers-10, structured-field lists)::

    RateLimit-Policy: "default";q=100;w=60
    RateLimit: "default";r=50;t=30

``q`` is the quota, ``w`` the window in seconds, ``r`` the units remaining
and ``t`` the seconds until the quota is whole again. The older names
``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``
(delta seconds) describe the most restrictive decision.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

HeaderMode = Literal["draft", "legacy", "both", "none"]
HEADER_MODES: tuple[HeaderMode, ...] = ("draft", "legacy", "both", "none")
DEFAULT_HEADER_MODE: HeaderMode = "draft"

HeadersOn = Literal["denied", "all"]
HEADERS_ON: tuple[HeadersOn, ...] = ("denied", "all")
# Rate-limit headers go on the answers that need them, the 429s (and the
# responses shadow mode would have denied), unless asked for on every
# response: a server writes each response header in Python (uvicorn
# validates and lower-cases them), and two more headers on every response
# cost it more than the decision does. Flask-Limiter, slowapi and Envoy's
# local rate limit leave them off by default too.
DEFAULT_HEADERS_ON: HeadersOn = "denied"


def whole_seconds(seconds: float) -> int | None:
    """`whole_seconds` rounds up to an integer (HTTP delta-seconds); None
    for ``inf`` (a cost that can never be admitted has no retry time)."""
    if seconds != seconds or seconds == math.inf:
        return None
    return max(0, math.ceil(seconds))


def policy_items(name: str, rates: Sequence[Any]) -> list[tuple[str, int, str]]:
    """`policy_items` names each rate of a limit for RateLimit-Policy:
    ``name`` for the first, ``name-2``, ``name-3``... for the next ones,
    as (item name, capacity, rendered item)."""
    items = []
    for index, rate in enumerate(rates):
        item = name if index == 0 else f"{name}-{index + 1}"
        window = max(1, math.ceil(rate.period))
        capacity = rate.limit if rate.burst is None else rate.burst
        items.append((item, capacity, f'"{item}";q={rate.limit};w={window}'))
    return items


def legacy_headers(
    limit: int, remaining: int, reset_after: float
) -> list[tuple[str, str]]:
    """`legacy_headers` renders the X-RateLimit-* trio of one decision."""
    headers = [
        ("X-RateLimit-Limit", str(limit)),
        ("X-RateLimit-Remaining", str(remaining)),
    ]
    reset = whole_seconds(reset_after)
    if reset is not None:
        headers.append(("X-RateLimit-Reset", str(reset)))
    return headers
