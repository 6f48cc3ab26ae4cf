"""Redis Cluster routing: which node serves which slot. Pure, no I/O.

The map is read from ``CLUSTER SHARDS`` (Redis 7 and later, Valkey 8), or
from ``CLUSTER SLOTS`` (Redis 6.2) once a node answered SHARDS with an
error (an unknown subcommand, or an ACL that denies it), and patched slot
by slot from MOVED replies; a transport failure marks it stale, and the
backend reads it again before its next call.
"""

from __future__ import annotations

from typing import Final

from redis.crc import key_slot
from redis.exceptions import ResponseError

SLOTS: Final = 16384

Address = tuple[str, int]

SHARDS: Final = ("CLUSTER", "SHARDS")
SLOTS_COMMAND: Final = ("CLUSTER", "SLOTS")

__all__ = [
    "SHARDS",
    "SLOTS",
    "SLOTS_COMMAND",
    "Address",
    "SlotMap",
    "key_slot",
    "shards_unavailable",
]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(flat: object) -> dict[str, object]:
    # A RESP2 map (a flat list of name, value, ...) as a dict by name.
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError(f"unexpected CLUSTER SHARDS map {flat!r}")
    return {_text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}


def shards_unavailable(reply: object) -> bool:
    """`shards_unavailable` is true for the error reply of a server that
    cannot answer CLUSTER SHARDS: Redis 6.2 (unknown subcommand) or an ACL
    that denies it (NOPERM)."""
    if not isinstance(reply, ResponseError):
        return False
    text = str(reply).lower()
    return (
        "unknown subcommand" in text
        or "unknown command" in text
        or (text.startswith("noperm") or "no permissions" in text)
    )


def _host(value: object, queried: Address) -> str:
    # A node's host as a reply names it; an empty or unknown one ("?") is
    # the queried node's host.
    host = _text(value) if value is not None else ""
    return queried[0] if host in ("", "?") else host


class SlotMap:
    """`SlotMap` maps each of the 16384 slots to its primary's address.

    ``stale`` is true until `update` succeeds, and again after
    `mark_stale`. Updates replace whole entries, so readers on other
    threads see an old or a new address, never a torn one.

    ``command`` is what the map is read with: `SHARDS`, until a node
    cannot answer it (`fall_back`), then `SLOTS_COMMAND`.

    ``tls``: the backend connects with TLS, so a SHARDS reply's
    ``tls-port`` is the one to use (SLOTS names the port of the connection
    that asked).
    """

    __slots__ = ("_nodes", "command", "stale", "tls")

    def __init__(self, tls: bool = False) -> None:
        self._nodes: list[Address | None] = [None] * SLOTS
        self.stale = True
        self.tls = tls
        self.command: tuple[str, str] = SHARDS

    def fall_back(self) -> None:
        """`fall_back` reads the map with CLUSTER SLOTS from now on."""
        self.command = SLOTS_COMMAND

    def update(self, reply: object, queried: Address) -> None:
        """`update` loads a reply to `command` read from ``queried`` (whose
        host stands in for an empty or unknown one)."""
        if self.command == SHARDS:
            self.update_shards(reply, queried)
        else:
            self.update_slots(reply, queried)

    def update_slots(self, reply: object, queried: Address) -> None:
        """`update_slots` loads a ``CLUSTER SLOTS`` reply."""
        if not isinstance(reply, list) or not reply:
            raise ValueError(f"unexpected CLUSTER SLOTS reply {reply!r}")
        nodes: list[Address | None] = [None] * SLOTS
        for entry in reply:
            start, end, primary = int(entry[0]), int(entry[1]), entry[2]
            address = (_host(primary[0], queried), int(primary[1]))
            for slot in range(start, end + 1):
                nodes[slot] = address
        self._load(nodes)

    def update_shards(self, reply: object, queried: Address) -> None:
        """`update_shards` loads a ``CLUSTER SHARDS`` reply (RESP2): each
        shard's slot ranges go to its node whose role is master, at its
        preferred endpoint (else its ip) and its port (its tls-port when
        `tls`; either when it has only one).
        A shard without slots or without a master serves nothing."""
        if not isinstance(reply, list) or not reply:
            raise ValueError(f"unexpected CLUSTER SHARDS reply {reply!r}")
        nodes: list[Address | None] = [None] * SLOTS
        for shard in reply:
            fields = _fields(shard)
            ranges, members = fields.get("slots"), fields.get("nodes")
            if not isinstance(ranges, list) or not isinstance(members, list):
                raise ValueError(f"unexpected CLUSTER SHARDS shard {shard!r}")
            address = self._primary(members, queried)
            if address is None:
                continue
            for i in range(0, len(ranges) - 1, 2):
                for slot in range(int(ranges[i]), int(ranges[i + 1]) + 1):
                    nodes[slot] = address
        self._load(nodes)

    def _primary(self, members: list[object], queried: Address) -> Address | None:
        # The address of the shard's master, None if it has none.
        names = ("tls-port", "port") if self.tls else ("port", "tls-port")
        for member in members:
            node = _fields(member)
            if _text(node.get("role")) != "master":
                continue
            port = node.get(names[0], node.get(names[1]))
            if port is None:
                raise ValueError(f"CLUSTER SHARDS node without a port: {member!r}")
            host = node.get("endpoint", node.get("ip"))
            return (_host(host, queried), int(port))  # type: ignore[call-overload]
        return None

    def _load(self, nodes: list[Address | None]) -> None:
        # Replaces the map whole (see the class: no torn reads).
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
