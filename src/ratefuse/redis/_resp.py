"""A minimal RESP2 reply reader: pure, fed with bytes, shared by both I/O
layers.

The backends send pre-packed commands and read the replies themselves, on
redis-py's connections (which still connect, authenticate and negotiate
TLS): redis-py's generic parser costs several times more client CPU per
reply than this one, and a decision's reply is five integers. Error
replies become ``redis.exceptions.ResponseError`` carrying the server's
text (NOSCRIPT, MOVED, ASK, TRYAGAIN are recognised by it).

Two readers parse the same way: `RespReader` here, and hiredis's C reader
when the ``hiredis`` package is installed (the ``hiredis`` extra), which
parsed both shapes of reply the backends read in half the time or less, a
decision's five integers and a batch's msgpack blob, and a blob read in
pieces in a seventh (benchmarks/redis_reply_readers.py).
`new_reader` is the one chosen at import; RATEFUSE_NO_HIREDIS=1 forces
`RespReader`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Final, Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

# What a reader's `gets` returns when the buffer holds no complete reply:
# hiredis's own marker (no RESP2 reply is a boolean), cheaper than asking
# it for another one (that costs about 1 us per reader made).
INCOMPLETE: Final = False
# Set to 1 to read replies with RespReader even when hiredis is installed.
NO_HIREDIS_ENV: Final = "RATEFUSE_NO_HIREDIS"
# A decision's reply, five integers, read in one match.
_FIVE_INTEGERS: Final = re.compile(rb"\*5\r\n" + rb":(-?\d+)\r\n" * 5)


class ProtocolError(ValueError):
    """`ProtocolError` is a reply that is not RESP2."""


class ReplyReader(Protocol):
    """`ReplyReader` is what `CallReplies` reads with: `RespReader` or
    hiredis's Reader (made by `hiredis_reader`)."""

    def feed(self, data: bytes, /) -> None:
        """`feed` appends bytes read from the connection."""

    def gets(self) -> object:
        """`gets` is the next complete reply, or INCOMPLETE; raises
        ProtocolError for bytes that are not RESP2."""

    def has_data(self) -> bool:
        """`has_data` is true while bytes fed are not yet parsed."""


class RespReader:
    """`RespReader` parses replies from the bytes given to `feed`.

    Replies are bytes (bulk and simple strings), int, None (nil),
    ResponseError (error replies, returned rather than raised) and lists
    of these, as hiredis's Reader gives them. Not thread-safe: one per
    connection and round.
    """

    __slots__ = ("_buffer", "_position")

    def __init__(self) -> None:
        self._buffer = b""
        self._position = 0

    def feed(self, data: bytes) -> None:
        """`feed` appends bytes read from the connection."""
        if self._position:
            self._buffer = self._buffer[self._position :] + data
            self._position = 0
        else:
            self._buffer += data

    def has_data(self) -> bool:
        """`has_data` is true while bytes fed are not yet parsed."""
        return len(self._buffer) > self._position

    def gets(self) -> object:
        """`gets` is the next complete reply, or INCOMPLETE."""
        integers = _FIVE_INTEGERS.match(self._buffer, self._position)
        if integers is not None:
            self._position = integers.end()
            return [int(number) for number in integers.groups()]
        try:
            reply, position = self._parse(self._position)
        except IndexError:
            return INCOMPLETE
        self._position = position
        return reply

    def _parse(self, position: int) -> tuple[object, int]:
        # Raises IndexError when the buffer ends inside the reply.
        buffer = self._buffer
        end = buffer.find(b"\r\n", position)
        if end < 0:
            raise IndexError
        kind = buffer[position]
        line = buffer[position + 1 : end]
        position = end + 2
        if kind == 58:  # ':' integer
            return int(line), position
        if kind == 42:  # '*' array
            count = int(line)
            if count < 0:
                return None, position
            items = []
            for _ in range(count):
                item, position = self._parse(position)
                items.append(item)
            return items, position
        if kind == 36:  # '$' bulk string
            size = int(line)
            if size < 0:
                return None, position
            if position + size + 2 > len(buffer):
                raise IndexError
            return buffer[position : position + size], position + size + 2
        if kind == 43:  # '+' simple string
            return line, position
        if kind == 45:  # '-' error
            return ResponseError(line.decode("utf-8", "replace")), position
        raise ProtocolError(
            f"not a RESP2 reply: {buffer[position - len(line) - 3 :][:40]!r}"
        )


def hiredis_reader() -> ReplyReader:
    """`hiredis_reader` is a hiredis Reader that gives replies as
    `RespReader` does; ImportError without the ``hiredis`` package."""
    import hiredis  # optional: the ``hiredis`` extra

    # Positional: keyword arguments cost hiredis twice as much per reader.
    reader: ReplyReader = hiredis.Reader(ProtocolError, ResponseError)
    return reader


def choose_reader(no_hiredis: str) -> Callable[[], ReplyReader]:
    """`choose_reader` is `hiredis_reader` when hiredis is installed and
    ``no_hiredis`` (RATEFUSE_NO_HIREDIS's value) is empty or "0", else
    `RespReader`."""
    if no_hiredis in ("", "0"):
        try:
            hiredis_reader()
        except ImportError:
            pass
        else:
            return hiredis_reader
    return RespReader


# The reader every round trip makes (CallReplies, and the sync transport's
# single call): chosen here, once.
new_reader: Callable[[], ReplyReader] = choose_reader(
    os.environ.get(NO_HIREDIS_ENV, "")
)


class CallReplies:
    """`CallReplies` reads the replies of one node's pipelined calls from
    the bytes given to `feed`: call i is due ``counts[i]`` replies (those of
    SCRIPT LOAD and ASKING, then its own), and `get` returns each call's
    own reply in turn. Pure; the transports do the reading. ``reader``
    (default: one by `new_reader`) parses the bytes."""

    __slots__ = ("_counts", "_left", "_reader", "index")

    def __init__(self, counts: list[int], reader: ReplyReader | None = None) -> None:
        self._counts = counts
        self._reader = new_reader() if reader is None else reader
        # The call whose reply comes next, and the replies it is still due.
        self.index = 0
        self._left = counts[0] if counts else 0

    @property
    def due(self) -> bool:
        """`due` is true while a call's reply is still to come."""
        return self.index < len(self._counts)

    @property
    def in_step(self) -> bool:
        """`in_step` is false when more was received than was asked (the
        connection is then out of step)."""
        return not self._reader.has_data()

    def feed(self, data: bytes) -> None:
        """`feed` adds received bytes; empty bytes mean the server closed
        the connection (ConnectionError)."""
        if not data:
            raise RedisConnectionError("Redis closed the connection")
        self._reader.feed(data)

    def get(self) -> object:
        """`get` is the next call's own reply (`index` then counts it), or
        INCOMPLETE until more is fed; raises ProtocolError."""
        gets = self._reader.gets
        while True:
            reply = gets()
            if reply is INCOMPLETE:
                return INCOMPLETE
            self._left -= 1
            if not self._left:
                self.index += 1
                if self.index < len(self._counts):
                    self._left = self._counts[self.index]
                return reply

    def fail(
        self, error: BaseException, deliver: Callable[[int, object], None]
    ) -> None:
        """`fail` delivers ``error`` as the outcome of every call still due."""
        for index in range(self.index, len(self._counts)):
            deliver(index, error)
