"""What both backends need before any I/O: validated settings, the default
breaker, and the connection settings derived from a user's client."""

from __future__ import annotations

import math
from typing import Any, Final

from ratefuse.breaker import BreakerConfig, CircuitBreaker

# Trips after 5 of the last 20 round trips, at least half of them failed;
# then fails fast for 1 s, doubling after each failed probe up to 30 s.
DEFAULT_BREAKER_CONFIG: Final = BreakerConfig(
    failure_rate_threshold=50.0,
    window_size=20,
    minimum_calls=5,
    wait_duration=1.0,
    backoff_multiplier=2.0,
    max_wait_duration=30.0,
    half_open_calls=1,
)


# Client settings that do not carry over to the backend's connections:
# redis-py's own timeout bookkeeping, RESP3-only features and hooks of the
# cluster client (the backend routes by itself).
_NOT_COPIED: Final = (
    "orig_",
    "maint_notifications",
    "redis_connect_func",
    "retry_on_",
    "himport",
)


def check_timeout(timeout: float) -> float:
    """`check_timeout` returns ``timeout`` as float seconds or raises
    ValueError unless finite and > 0."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError(f"timeout must be a number of seconds, got {timeout!r}")
    if not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be finite and > 0 seconds, got {timeout!r}")
    return float(timeout)


def check_chunk(chunk: int) -> int:
    """`check_chunk` returns ``chunk`` (keys per batched call) or raises."""
    if (
        isinstance(chunk, bool)
        or not isinstance(chunk, int)
        or not 1 <= chunk <= 10_000
    ):
        raise ValueError(f"chunk must be an int in [1, 10000], got {chunk!r}")
    return chunk


def default_breaker(name: str) -> CircuitBreaker:
    """`default_breaker` is a breaker with DEFAULT_BREAKER_CONFIG."""
    return CircuitBreaker(name, DEFAULT_BREAKER_CONFIG)


def connection_settings(
    base: dict[str, Any], timeout: float, retry: object
) -> dict[str, Any]:
    """`connection_settings` is ``base`` (a client's connection kwargs) with
    the backend's own: ``timeout`` on every connect, send and read, no
    redis-py retries (a consuming call is never resent blindly), RESP2
    (what :mod:`._resp` reads; no push messages), bytes replies, no
    health-check pings."""
    settings = {
        name: value for name, value in base.items() if not name.startswith(_NOT_COPIED)
    }
    settings.update(
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=retry,
        decode_responses=False,
        health_check_interval=0,
        protocol=2,
    )
    return settings
