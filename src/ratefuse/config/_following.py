"""`FollowingSource`: what the store-following config sources share.

A source's thread follows its store; when the store is lost it counts a
reconnect and logs the outage once at warning (a dead store must not flood
the logs), and the first read after it logs the recovery.
"""

from __future__ import annotations

import logging
import threading
from typing import Generic, Protocol, TypeVar

from ratefuse.config._source import check_member, check_seconds, default_member
from ratefuse.engine.log_events import LogEvent, emit

logger = logging.getLogger("ratefuse.config")


class _Described(Protocol):
    def describe(self) -> str: ...


Store = TypeVar("Store", bound=_Described)


class FollowingSource(Generic[Store]):
    """`FollowingSource` is the base of a `ConfigSource` that follows a
    store: its ``member`` (default ``host:pid``), ``ack_ttl`` (at least
    ``min_ack_ttl``) and ``retry_interval`` seconds, checked; ``reconnects``
    counts the outages its thread recovered from. A subclass sets
    ``store``."""

    store: Store

    def __init__(
        self,
        member: str | None,
        ack_ttl: float,
        min_ack_ttl: float,
        retry_interval: float,
    ) -> None:
        self.member = check_member(default_member() if member is None else member)
        self.ack_ttl = check_seconds("ack_ttl", ack_ttl, min_ack_ttl)
        self.retry_interval = check_seconds("retry_interval", retry_interval, 0.0)
        self.reconnects = 0
        self._stop = threading.Event()
        self._version: int | None = None
        self._lost = False  # since the last successful read

    def describe(self) -> str:
        """`describe` names the source: the store's URL and key."""
        return self.store.describe()

    def _store_lost(self, exc: BaseException) -> None:
        # The store failed the thread's reads: counted, logged once at
        # warning per outage.
        self.reconnects += 1
        emit(
            logger,
            logging.DEBUG if self._lost else logging.WARNING,
            LogEvent.CONFIG_SOURCE_LOST,
            "config.source_lost: %s: %s",
            self.describe(),
            exc,
            source=self.describe(),
            error=str(exc),
        )
        self._lost = True

    def _store_read(self) -> None:
        # A read succeeded: the end of an outage, if there was one.
        if self._lost:
            self._lost = False
            emit(
                logger,
                logging.INFO,
                LogEvent.CONFIG_SOURCE_RECOVERED,
                "config.source_recovered: %s",
                self.describe(),
                source=self.describe(),
            )
