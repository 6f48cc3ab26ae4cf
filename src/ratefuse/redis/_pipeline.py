"""`Pipeline`: one node's share of a round trip, as the transports track it.

Both transports (:mod:`._sync_io`, :mod:`._async_io`) write every node's
calls first and then read the replies node by node; a `Pipeline` records
what that takes, without I/O: the calls, how many replies each call is
due, the connection (until it is handed back or dropped) and the error
that stopped the writing.
"""

from __future__ import annotations

from typing import Any

from ratefuse.redis._exchange import Call, Receive
from ratefuse.redis._slots import Address


class Pipeline:
    """`Pipeline` is the ``calls`` a round sends to ``address``.

    ``connection`` and ``channel`` (what replies are read from: a socket,
    a stream) are the transport's while they are set; `detach` takes them
    back, once, so that an interruption never drops a connection twice.
    ``counts[i]`` is how many replies call i is due (its own is the last).
    Not shared between threads.
    """

    __slots__ = ("address", "calls", "channel", "connection", "counts", "error")

    def __init__(self, address: Address | None, calls: list[Call]) -> None:
        self.address = address
        self.calls = calls
        self.counts: list[int] = []
        self.connection: Any = None
        self.channel: Any = None
        self.error: BaseException | None = None

    def wire(self, call: Call) -> bytes:
        """`wire` is what to write for ``call`` (one of `calls`, in order),
        its replies counted."""
        pieces, count = call.wire()
        self.counts.append(count)
        return pieces[0] if count == 1 else b"".join(pieces)

    def fail(self, error: BaseException) -> Any:
        """`fail` records that writing stopped on ``error`` and returns the
        connection to drop (None if there is none)."""
        self.error = error
        return self.detach()

    def detach(self) -> Any:
        """`detach` returns the connection (None once detached or never
        taken) and forgets it."""
        connection, self.connection = self.connection, None
        return connection

    def reading(self, receive: Receive) -> Any:
        """`reading` detaches the connection to read the replies from; when
        writing failed there is none (None), and every call is handed the
        error that stopped it."""
        connection = self.detach()
        if connection is None:
            for call in self.calls:
                receive(call, self.error)
        return connection

    def deliver(self, receive: Receive) -> Any:
        """`deliver` hands the reply of the ``index``-th call on to
        ``receive`` (as ``deliver(index, reply)``)."""
        calls = self.calls
        return lambda index, reply: receive(calls[index], reply)
