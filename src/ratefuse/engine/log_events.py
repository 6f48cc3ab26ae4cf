"""The log events ratefuse emits: stable logger names, stable event names
and the structured fields they carry (the public table is
:mod:`ratefuse.logs`).

Every record is an ordinary stdlib `logging` record whose ``extra`` holds
``event_name`` (one of :class:`LogEvent`) and the event's fields, so any
handler or formatter (structlog's ``ProcessorFormatter`` with
``ExtraAdder``, python-json-logger, ...) can render them. ``event_name``
rather than ``event``: structlog keeps the message under ``event``.

A key is never logged as given (it may be a token or an e-mail address):
`key_field` is its fingerprint unless `set_key_logging` says otherwise.

Emitting costs one ``isEnabledFor`` check when nobody listens. Nothing
here runs on a decision's hot path: the callers emit on state changes,
fallbacks and anomalies, and denials only through an opt-in
:class:`ratefuse.logs.DenialLog`.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from typing import Final, Literal

__all__ = [
    "BREAKER_LOGGER",
    "CONFIG_LOGGER",
    "DENIALS_LOGGER",
    "LEASE_LOGGER",
    "REDIS_LOGGER",
    "KeyLogging",
    "LogEvent",
    "emit",
    "key_field",
    "log_transition",
    "set_key_logging",
]

BREAKER_LOGGER: Final = "ratefuse.breaker"
REDIS_LOGGER: Final = "ratefuse.redis"
CONFIG_LOGGER: Final = "ratefuse.config"
LEASE_LOGGER: Final = "ratefuse.lease"
DENIALS_LOGGER: Final = "ratefuse.denials"


class LogEvent(str, enum.Enum):
    """`LogEvent` is the stable name of each event, in ``extra["event_name"]``
    (a str: it compares equal to its value)."""

    BREAKER_TRANSITION = "breaker.transition"
    BACKEND_FALLBACK = "backend.fallback"
    BACKEND_RECOVERED = "backend.recovered"
    CONFIG_RELOADED = "config.reloaded"
    CONFIG_REJECTED = "config.rejected"
    CONFIG_APPLIED = "config.applied"
    CONFIG_SOURCE_LOST = "config.source_lost"
    CONFIG_SOURCE_RECOVERED = "config.source_recovered"
    LEASE_ANOMALY = "lease.anomaly"
    DENY_CACHE_ANOMALY = "deny_cache.anomaly"
    LIMIT_DENIED = "limit.denied"

    def __str__(self) -> str:
        return self.value


KeyLogging = Literal["hash", "raw", "none"]
_key_logging: KeyLogging = "hash"


def set_key_logging(mode: KeyLogging) -> None:
    """`set_key_logging` says how keys appear in log records, for the whole
    process: "hash" (default) a 16-hex-digit BLAKE2b fingerprint, stable
    across processes so records of one key can be grouped (it hides a key,
    but a guessable key such as a small user id can be found by trying
    candidates: use "none" for those); "raw" the key itself (only where
    keys are not secrets); "none" no key field."""
    global _key_logging
    if mode not in ("hash", "raw", "none"):
        raise ValueError(f"key logging must be 'hash', 'raw' or 'none', got {mode!r}")
    _key_logging = mode


def key_field(key: object) -> dict[str, object]:
    """`key_field` is the ``extra`` entry for ``key`` under the process's
    key logging mode: ``{"key_hash": ...}``, ``{"key": ...}`` or empty."""
    mode = _key_logging
    if mode == "none" or key is None:
        return {}
    if mode == "raw":
        return {"key": key if isinstance(key, (str, int)) else repr(key)}
    if isinstance(key, bytes):
        data = key
    elif isinstance(key, str):
        data = key.encode("utf-8", "surrogatepass")
    else:
        data = repr(key).encode()
    return {"key_hash": hashlib.blake2b(data, digest_size=8).hexdigest()}


def emit(
    logger: logging.Logger,
    level: int,
    event: LogEvent,
    message: str,
    *args: object,
    **fields: object,
) -> None:
    """`emit` logs ``message % args`` at ``level`` on ``logger`` with
    ``event_name`` and ``fields`` in ``extra``, if the logger is enabled for
    ``level``. Field names must not be LogRecord attributes (``name``,
    ``msg``, ...): logging raises KeyError for those."""
    if logger.isEnabledFor(level):
        fields["event_name"] = event.value
        logger.log(level, message, *args, extra=fields)


_breaker_logger: Final = logging.getLogger(BREAKER_LOGGER)


def log_transition(breaker: object, old: object, new: object) -> None:
    """`log_transition` is the listener every breaker starts with: it logs
    ``breaker.transition`` at INFO with ``breaker``, ``old_state`` and
    ``state``. It runs after the change, outside the breaker's lock, only
    when the state changes: never on the CLOSED path.
    `remove_listener(log_transition)` silences one breaker. INFO, not
    WARNING, for OPEN too: opening is a breaker's ordinary work, and where
    logging is not configured Python prints WARNING records to stderr
    (``logging.lastResort``)."""
    old_name = getattr(old, "name", str(old))
    new_name = getattr(new, "name", str(new))
    emit(
        _breaker_logger,
        logging.INFO,
        LogEvent.BREAKER_TRANSITION,
        "circuit breaker %r: %s -> %s",
        getattr(breaker, "name", "?"),
        old_name,
        new_name,
        breaker=getattr(breaker, "name", "?"),
        old_state=old_name,
        state=new_name,
    )
