"""`SentinelWatch`: which primary a Sentinel-managed backend writes to.

A redis-py ``Sentinel.master_for`` client asks the sentinels for the
primary only when a connection connects, and the backend keeps its
connections: after a failover they would go on writing to the old primary
until the sentinel reconfigures it (seconds later), and everything the old
primary admits then is lost when it resyncs from the new one. So the
backend asks the sentinels again at most every `SENTINEL_RECHECK` seconds
and drops connections to any other address. Decisions admitted by the old
primary between its replica's promotion and that check are lost (Redis
replication is asynchronous): the limit can over-admit by those.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from ratefuse.redis._slots import Address

# Seconds between two questions to the sentinels: bounds how long decisions
# keep going to a primary the sentinels have replaced.
SENTINEL_RECHECK: Final = 0.5


def sentinel_pool(pool: Any) -> bool:
    """`sentinel_pool` is true for a redis-py Sentinel master pool (sync or
    asyncio): one whose ``get_master_address`` asks the sentinels."""
    return bool(getattr(pool, "is_master", False)) and hasattr(
        pool, "get_master_address"
    )


def check_primary_pool(pool: Any) -> None:
    """`check_primary_pool` raises ValueError for a Sentinel pool of
    replicas (``Sentinel.slave_for``): every decision writes."""
    if hasattr(pool, "get_master_address") and not getattr(pool, "is_master", True):
        raise ValueError(
            "client must reach the primary: a backend writes on every decision, "
            "so give it Sentinel.master_for(name), not slave_for(name)"
        )


def connection_address(connection: Any) -> Address:
    """`connection_address` is the (host, port) a connection connected to."""
    return (str(connection.host), int(connection.port))


class SentinelWatch:
    """`SentinelWatch` knows the primary's address, asked of the sentinels
    through ``pool`` at most every ``recheck`` seconds on ``clock``.

    `due` is cheap (a clock read); the caller that finds it due and wins
    `claim` asks (`record` the answer, sync or awaited), the others go on
    with the address they know. A failed question keeps the old address
    and is asked again after ``recheck``.
    """

    def __init__(
        self,
        pool: Any,
        recheck: float = SENTINEL_RECHECK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pool = pool
        self.recheck = recheck
        self.clock = clock
        self.address: Address | None = None
        self._next = clock()
        self._lock = threading.Lock()

    def due(self) -> bool:
        """`due` is true when the address should be asked again."""
        return self.clock() >= self._next

    def claim(self) -> bool:
        """`claim` is true for the one caller that asks this time; it
        moves the next question ``recheck`` ahead."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self.clock() < self._next:
                return False
            self._next = self.clock() + self.recheck
            return True
        finally:
            self._lock.release()

    def record(self, address: Any) -> None:
        """`record` keeps the sentinels' answer ``(host, port)``."""
        self.address = (str(address[0]), int(address[1]))

    def stale(self, connection: Any) -> bool:
        """`stale` is true for a connection to another address than the
        primary's (False while the address is unknown)."""
        address = self.address
        return address is not None and connection_address(connection) != address

    def ask(self) -> None:
        """`ask` asks the sentinels now (sync pools), when due and claimed;
        a failure keeps the address known."""
        if self.due() and self.claim():
            # A failure is asked again after the recheck.
            with contextlib.suppress(Exception):
                self.record(self.pool.get_master_address())

    async def aask(self) -> None:
        """`aask` is `ask` for redis.asyncio pools."""
        if self.due() and self.claim():
            with contextlib.suppress(Exception):
                self.record(await self.pool.get_master_address())
