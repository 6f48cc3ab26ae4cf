"""Call keys: which quota a gRPC call counts against.

A :class:`CallKey` reads a key from a call (its full method name and its
server context); it returns None when the call has no such key, and the
key's ``fallback`` (by default the peer's address) applies instead, so
leaving out a metadata entry never escapes the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Key = str | bytes | int
Read = Callable[[str, Any], Key | None]

# The key of a call whose peer gRPC does not name: such calls share one
# quota rather than escape it.
UNKNOWN_PEER = "unknown"


class CallKey:
    """`CallKey` reads a key from a call: ``read(method, context)`` with the
    full method name (``/pkg.Service/Method``) and the server's
    ServicerContext (sync or asyncio). ``of_context``, when given, is the
    same reader for keys that do not depend on the method, a function of
    the context alone (one call fewer per decision). ``name`` describes it
    in reprs."""

    __slots__ = ("name", "of_context", "read")

    def __init__(
        self,
        name: str,
        read: Read,
        *,
        of_context: Callable[[Any], Key | None] | None = None,
    ) -> None:
        self.name = name
        self.read = read
        self.of_context = of_context

    def __call__(self, method: str, context: Any) -> Key | None:
        return self.read(method, context)

    def __repr__(self) -> str:
        return f"CallKey({self.name!r})"


def peer_address(peer: str | None) -> str:
    """`peer_address` is the address of a gRPC peer string without its port:
    ``ipv4:10.0.0.1:5000`` is ``10.0.0.1``, ``ipv6:[::1]:5000`` is ``::1``;
    other forms (``unix:...``) are kept whole."""
    if not peer:
        return UNKNOWN_PEER
    if peer.startswith("ipv4:"):
        return peer[5:].rpartition(":")[0]
    if peer.startswith("ipv6:["):
        return peer[6:].partition("]")[0]
    return peer


def _peer_of_context(context: Any) -> Key:
    return peer_address(context.peer())


def _peer(method: str, context: Any) -> Key:
    return peer_address(context.peer())


def _method(method: str, context: Any) -> Key:
    return method


PEER = CallKey("peer", _peer, of_context=_peer_of_context)
"""`PEER` keys a call by the client's IP address (``context.peer()``
without the port). Behind a proxy this is the proxy: use :func:`metadata`
with the header the proxy sets."""

METHOD = CallKey("method", _method)
"""`METHOD` keys a call by its full method name: one quota per method
(not per client)."""


def metadata(name: str, fallback: CallKey | None = PEER) -> CallKey:
    """`metadata` keys a call by the value of its metadata entry ``name``
    (case insensitive: gRPC lower-cases metadata keys; an API token, a
    tenant id; sent several times, the values joined with commas). Without
    the entry the key is ``fallback``'s (default: the peer's address); None
    means such calls are not limited by this limit at all."""
    if not isinstance(name, str) or not name or not name.isascii():
        raise ValueError(f"metadata name must be a non-empty ASCII str, got {name!r}")
    if name.lower().endswith("-bin"):
        raise ValueError(f"metadata name must not be binary (-bin), got {name!r}")
    if fallback is not None and not isinstance(fallback, CallKey):
        raise ValueError(f"fallback must be a CallKey or None, got {fallback!r}")
    wanted = name.lower()
    fallback_read = None if fallback is None else fallback.read

    def read(method: str, context: Any) -> Key | None:
        values = [
            value for key, value in context.invocation_metadata() or () if key == wanted
        ]
        if values:
            return ",".join(values)
        return None if fallback_read is None else fallback_read(method, context)

    return CallKey(f"metadata({name!r})", read)
