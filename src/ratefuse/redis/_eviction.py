"""What a Redis node's memory settings mean for the limiter keys on it.

Every limiter key has a TTL, so every eviction policy but ``noeviction``
(``allkeys-*`` and ``volatile-*`` alike) may drop one under ``maxmemory``:
its state is forgotten and its next decisions admit as if new (2.05x the
bound under allkeys-lru in issue 21). A backend asks each node once, before
its first decision there (``CONFIG GET maxmemory*``), logs a warning and
counts the node when its policy can evict. A node that refuses CONFIG
(renamed or disabled, or an ACL without it) is counted as unchecked and
otherwise served as usual.
"""

from __future__ import annotations

import logging
import threading
from typing import Final

from redis.exceptions import ResponseError

from ratefuse.redis._exchange import Counters
from ratefuse.redis._slots import Address

logger = logging.getLogger("ratefuse.redis")

# The command each node is asked before its first decision.
EVICTION_CHECK: Final = ("CONFIG", "GET", "maxmemory*")
# The one policy under which Redis never drops a key to free memory (it
# refuses writes instead, which the backend's breaker counts).
SAFE_POLICY: Final = b"noeviction"


def evicting_policy(reply: object) -> tuple[str, str] | None:
    """`evicting_policy` is (policy, maxmemory) of a ``CONFIG GET
    maxmemory*`` reply when the policy can evict limiter keys, else None
    (also for a reply it cannot read)."""
    if not isinstance(reply, list) or len(reply) % 2:
        return None
    settings = dict(zip(reply[::2], reply[1::2], strict=True))
    policy = settings.get(b"maxmemory-policy")
    if not isinstance(policy, bytes) or policy == SAFE_POLICY:
        return None
    memory = settings.get(b"maxmemory", b"?")
    as_text = memory.decode("ascii", "replace") if isinstance(memory, bytes) else "?"
    return policy.decode("ascii", "replace"), as_text


class EvictionCheck:
    """`EvictionCheck` remembers which nodes were asked and records what
    they answered. Thread-safe (two threads may ask one node once each)."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        # The nodes asked (or being asked); read without the lock.
        self.asked: set[Address | None] = set()
        self._lock = threading.Lock()

    def due(self, address: Address | None) -> bool:
        """`due` is true once per node: the caller then asks it."""
        if address in self.asked:
            return False
        with self._lock:
            if address in self.asked:
                return False
            self.asked.add(address)
        return True

    def record(self, address: Address | None, reply: object) -> bool:
        """`record` takes the node's reply (or the exception that ended the
        command) and says whether the node answered; a transport failure
        leaves it due again."""
        node = "the Redis node" if address is None else f"{address[0]}:{address[1]}"
        if isinstance(reply, ResponseError):
            self._counters.add("unchecked_nodes")
            logger.info("%s refused CONFIG GET (%s): eviction not checked", node, reply)
            return True
        if isinstance(reply, BaseException):
            with self._lock:
                self.asked.discard(address)
            return False
        evicting = evicting_policy(reply)
        if evicting is not None:
            self._counters.add("evicting_nodes")
            policy, memory = evicting
            logger.warning(
                "%s has maxmemory-policy %s (maxmemory %s): it can evict "
                "rate-limit keys, whose limits then start afresh and admit "
                "too much; use noeviction (decisions then fall back while "
                "Redis is out of memory)",
                node,
                policy,
                memory,
            )
        return True
