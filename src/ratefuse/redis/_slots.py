"""Redis Cluster routing: which node serves which slot. Pure, no I/O.

The map is read from ``CLUSTER SLOTS`` (Redis 6.2 and later, Valkey) and
patched slot by slot from MOVED replies; a transport failure marks it
stale, and the backend reads it again before its next call.
"""

from __future__ import annotations

from typing import Final

from redis.crc import key_slot

SLOTS: Final = 16384

Address = tuple[str, int]

__all__ = ["SLOTS", "Address", "SlotMap", "key_slot"]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SlotMap:
    """`SlotMap` maps each of the 16384 slots to its primary's address.

    ``stale`` is true until `update` succeeds, and again after
    `mark_stale`. Updates replace whole entries, so readers on other
    threads see an old or a new address, never a torn one.
    """

    __slots__ = ("_nodes", "stale")

    def __init__(self) -> None:
        self._nodes: list[Address | None] = [None] * SLOTS
        self.stale = True

    def update(self, reply: object, queried: Address) -> None:
        """`update` loads a ``CLUSTER SLOTS`` reply read from ``queried``
        (whose host stands in for an empty or unknown one)."""
        if not isinstance(reply, list) or not reply:
            raise ValueError(f"unexpected CLUSTER SLOTS reply {reply!r}")
        nodes: list[Address | None] = [None] * SLOTS
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            host = _text(primary[0])
            if host in ("", "?"):
                host = queried[0]
            address = (host, int(primary[1]))
            for slot in range(start, end + 1):
                nodes[slot] = address
        self._nodes = nodes
        self.stale = False

    def node(self, slot: int) -> Address | None:
        """`node` is the address serving ``slot``, None if unknown."""
        return self._nodes[slot]

    def moved(self, slot: int, address: Address) -> None:
        """`moved` records a MOVED reply: ``slot`` is now at ``address``."""
        self._nodes[slot] = address

    def mark_stale(self) -> None:
        """`mark_stale` asks for a fresh map before the next call."""
        self.stale = True

    def addresses(self) -> list[Address]:
        """`addresses` lists the distinct known primaries."""
        return list(dict.fromkeys(node for node in self._nodes if node is not None))
