"""`ConfigFollower`: a Registry kept on the newest good version of a config
source."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from ratefuse.config._registry import Registry
from ratefuse.config._schema import ConfigError, StaleVersionError
from ratefuse.config._source import ConfigDocument, ConfigSource
from ratefuse.config._toml import parse_toml
from ratefuse.engine.log_events import LogEvent, emit

logger = logging.getLogger("ratefuse.config")


@dataclass(frozen=True)
class FollowerStats:
    """`FollowerStats` counts what a follower did with the versions its
    source delivered: ``version`` is the one in force (None before the
    first), ``applied`` the versions applied, ``rejected`` the invalid ones
    refused (each counted once, however often it is delivered), ``stale``
    the deliveries older than the version in force, and ``last_error`` the
    last refusal's message."""

    version: int | None
    applied: int
    rejected: int
    stale: int
    last_error: str | None


class ConfigFollower:
    """`ConfigFollower` applies to ``registry`` each version ``source``
    delivers, once and in order.

    A version newer than the one in force is applied whole with
    ``Registry.update`` (limits unchanged by it keep their state; changed
    ones follow update's rule), or refused whole: an invalid document is
    logged (logger ``ratefuse.config``, event ``config.rejected``) and
    counted, and the version in force stays. An older or equal version is
    never applied. ``allow_removals`` is update's: without it a version
    must name what it drops in ``[removed]``.

    `start` starts the source; `close` (or leaving the ``with`` block)
    stops it. Thread-safe; the source's thread applies the versions.
    """

    def __init__(
        self,
        registry: Registry,
        source: ConfigSource,
        *,
        allow_removals: bool = False,
    ) -> None:
        if not isinstance(registry, Registry):
            raise TypeError(f"registry must be a Registry, got {registry!r}")
        self.registry = registry
        self.source = source
        self._allow_removals = allow_removals
        self._changed = threading.Condition()
        self._applied = 0
        self._rejected = 0
        self._stale = 0
        self._last_error: str | None = None
        self._rejected_version: int | None = None

    def start(self) -> ConfigFollower:
        """`start` starts following the source; returns the follower."""
        self.source.start(self._deliver)
        return self

    def close(self) -> None:
        """`close` stops following (the configuration in force stays)."""
        self.source.close()

    def __enter__(self) -> ConfigFollower:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def version(self) -> int | None:
        """`version` is the version in force (None before the first)."""
        return self.registry.config_version

    def stats(self) -> FollowerStats:
        """`stats` is a snapshot of the follower's counts."""
        with self._changed:
            return FollowerStats(
                self.registry.config_version,
                self._applied,
                self._rejected,
                self._stale,
                self._last_error,
            )

    def wait_for_version(self, minimum: int, timeout: float) -> int | None:
        """`wait_for_version` waits up to ``timeout`` seconds until the
        version in force is at least ``minimum``; returns it, or None if
        the time ran out first."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                version = self.registry.config_version
                if version is not None and version >= minimum:
                    return version
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)

    def _deliver(self, document: ConfigDocument) -> int | None:
        # Called by the source's thread; returns the version in force.
        with self._changed:
            in_force = self.registry.config_version
            if in_force is not None and document.version <= in_force:
                self._stale += document.version < in_force
                return in_force
            if document.version == self._rejected_version:
                return in_force  # refused already: once is enough
            where = f"{self.source.describe()} version {document.version}"
            try:
                raw = parse_toml(document.text, where)
                self.registry.update(
                    raw, allow_removals=self._allow_removals, version=document.version
                )
            except StaleVersionError:
                self._stale += 1  # another follower of this registry was first
                return self.registry.config_version
            except Exception as exc:  # a version that cannot apply is refused
                self._refuse(document.version, where, exc)
                return in_force
            self._applied += 1
            self._changed.notify_all()
        emit(
            logger,
            logging.INFO,
            LogEvent.CONFIG_APPLIED,
            "config.applied: %s",
            where,
            version=document.version,
        )
        return document.version

    def _refuse(self, version: int, where: str, exc: Exception) -> None:
        # Precondition: self._changed is held.
        self._rejected += 1
        self._rejected_version = version
        self._last_error = str(exc)
        logger.error(
            "config.rejected: %s: %s",
            where,
            exc,
            extra={
                "event_name": LogEvent.CONFIG_REJECTED,
                "version": version,
                "error": str(exc),
            },
            exc_info=not isinstance(exc, ConfigError),
        )
