"""Which way each Redis node runs a single decision: FCALL of the Functions
library (Redis 7 and later), or EVALSHA of the algorithm's script.

Every node starts on Functions. Its first FCALL tells (no probe round
trip): "Function not found" loads the library (``FUNCTION LOAD REPLACE``)
ahead of the call once; an unknown FCALL (Redis 6.2, a Valkey or proxy
without Functions), a NOPERM (an ACL without FCALL), or a library that
cannot be loaded (an ACL without FUNCTION) moves the node to EVALSHA, and
the call is resent there: none of these ran it. A node on EVALSHA that
answers NOSCRIPT (a flushed script cache: a restart, a failover) is tried
on Functions again from the next request on, so a server that was upgraded
or replaced is chosen anew. Batches always use EVALSHA.

Functions come first wherever a node has them because they measure
cheaper for every single decision, in the server's instructions per call
(benchmarks/redis_server_instructions.py): the library parses a limiter's
limits once, where a script converts its limit arguments on every call.
On EVALSHA a single decision of one limit (gcra, the windows, the sliding
log) goes to its algorithm's lean script (:func:`._scripts.lean_script`),
about half the instructions of the exact script, which rebuilds its whole
prelude on every call.
"""

from __future__ import annotations

import logging
from enum import IntEnum

from redis.exceptions import ResponseError

from ratefuse.redis._slots import Address

logger = logging.getLogger("ratefuse.redis")


class ScriptPath(IntEnum):
    """`ScriptPath` is how single decisions reach a node."""

    FUNCTIONS = 1
    EVALSHA = 2


# Error replies to FCALL that mean it did not run and never will on that
# node: no such command (6.2, no Functions) or no permission for it.
_NO_FCALL = ("ERR unknown command", "NOPERM")
_NOT_FOUND = "ERR Function not found"


def function_not_found(error: ResponseError) -> bool:
    """`function_not_found` is true when an FCALL met no such function
    (the library was never loaded, or was flushed)."""
    return str(error).startswith(_NOT_FOUND)


def fcall_refused(error: ResponseError) -> bool:
    """`fcall_refused` is true when a node cannot run FCALL at all (an
    unknown command, or an ACL that denies it)."""
    return str(error).startswith(_NO_FCALL)


class ScriptPaths:
    """`ScriptPaths` is the path of each node (address None: the single
    Redis). ``forced`` (None: chosen per node as the module says) pins
    every node to one path, for tests and servers known to refuse
    Functions. Thread-safe (single set operations)."""

    def __init__(self, forced: ScriptPath | None = None) -> None:
        self.forced = forced
        self._evalsha: set[Address | None] = set()

    def functions(self, address: Address | None) -> bool:
        """`functions` is true when single decisions to ``address`` go out
        as FCALL."""
        if self.forced is not None:
            return self.forced == ScriptPath.FUNCTIONS
        return address not in self._evalsha

    def use_evalsha(self, address: Address | None, error: ResponseError) -> None:
        """`use_evalsha` moves ``address`` to EVALSHA after ``error``."""
        if address not in self._evalsha:
            self._evalsha.add(address)
            node = "the Redis node" if address is None else f"{address[0]}:{address[1]}"
            logger.info("%s decides through EVALSHA: FCALL failed (%s)", node, error)

    def retry_functions(self, address: Address | None) -> None:
        """`retry_functions` tries Functions on ``address`` again."""
        self._evalsha.discard(address)
