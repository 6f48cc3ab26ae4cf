"""The redis-py (sync) I/O of the Redis backend: connections per node, and
writing packed commands and reading replies on their sockets. Nothing else:
planning, decoding, redirections and reloads are :mod:`._exchange`."""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from ratefuse.core.errors import DeadlineExceeded
from ratefuse.engine.deadline import Budget, current
from ratefuse.redis import _resp
from ratefuse.redis._codec import ASKING, Packer, pack_command
from ratefuse.redis._connection import (
    connection_settings,
    node_factory,
    start_pool,
    uses_tls,
    wrong_client,
)
from ratefuse.redis._exchange import Call, Plan, Receive, single_command
from ratefuse.redis._pipeline import Pipeline
from ratefuse.redis._resp import INCOMPLETE, CallReplies, ProtocolError
from ratefuse.redis._script_paths import ScriptPaths
from ratefuse.redis._sentinel import SentinelWatch
from ratefuse.redis._slots import Address

# redis-py's sync connections are untyped: calls on them are Any.
SyncConnection = Any
RECV_SIZE = 1 << 16


def _socket(connection: SyncConnection) -> socket.socket | None:
    # The connected socket of a redis-py connection (None if closed). The
    # attribute is private but has been there since redis-py 2.
    return getattr(connection, "_sock", None)


class Held:
    """`Held` is a redis-py ``connection`` as the transport keeps it: with
    its socket, a poller on that socket (asking whether the server closed
    an idle connection costs a third of a select) and a reply reader for
    single calls (a new one per call cost about a microsecond); both are
    made anew whenever the connection's socket changes. Used by one
    thread at a time."""

    __slots__ = ("connection", "poll", "reader", "sock")

    def __init__(self, connection: SyncConnection) -> None:
        self.connection = connection
        self.sock: socket.socket | None = None
        self.poll: Any = None
        self.reader: _resp.ReplyReader | None = None

    def bind(self, sock: socket.socket) -> socket.socket:
        """`bind` takes ``sock`` as the connection's socket, with a new
        poller and reader, and returns it."""
        poll = select.poll()
        poll.register(sock, select.POLLIN)
        self.sock, self.poll, self.reader = sock, poll, None
        return sock

    def disconnect(self) -> None:
        """`disconnect` closes the connection (redis-py reconnects it when
        it is next taken)."""
        self.sock = self.poll = self.reader = None
        self.connection.disconnect()


class SyncTransport:
    """`SyncTransport` holds idle connections per node and runs rounds.

    ``factory(address)`` makes a connection (address None: the single
    node). redis-py connects, authenticates and negotiates TLS; the
    transport then writes packed commands and reads replies on the socket
    itself (:mod:`._resp`). Thread-safe: a connection is used by one
    thread at a time. With a ``watch`` (a Sentinel-managed client), a
    connection to another address than the current primary's is dropped
    instead of used (see :mod:`._sentinel`). ``tls``: the connections
    use TLS (the cluster's nodes are reached on their TLS ports).
    """

    def __init__(
        self,
        factory: Callable[[Address | None], SyncConnection],
        watch: SentinelWatch | None = None,
        tls: bool = False,
    ) -> None:
        self._factory = factory
        self.tls = tls
        # How each node runs single decisions (FCALL or EVALSHA).
        self.paths = ScriptPaths()
        self._watch = watch
        self._idle: dict[Address | None, list[Held]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _take(self, address: Address | None) -> Held:
        # A connected connection (its socket is ``sock``); raises if it
        # cannot connect.
        watch = self._watch
        if watch is not None:
            watch.ask()
        idle = self._idle.get(address)
        held = None
        if idle:
            # Not contextlib.suppress: a context manager per decision costs.
            try:  # noqa: SIM105
                held = idle.pop()
            except IndexError:  # another thread took it
                pass
        if held is None:
            held = Held(self._factory(address))
        connection = held.connection
        try:
            sock = _socket(connection)
            if sock is not None and watch is not None and watch.stale(connection):
                held.disconnect()  # the sentinels name another primary
                sock = None
            if sock is not None and sock is not held.sock:
                held.bind(sock)
            # Data or EOF waiting on an idle connection means the server
            # closed it (a restart): reconnect before sending, not after, so
            # that no call's outcome is left unknown.
            if sock is not None and held.poll.poll(0):
                held.disconnect()
                sock = None
            if sock is None:
                connection.connect()
                sock = _socket(connection)
                if sock is None:
                    raise RedisConnectionError("redis-py connection has no socket")
                held.bind(sock)
        except BaseException:
            held.disconnect()
            raise
        return held

    def _give(self, address: Address | None, held: Held) -> None:
        if self._closed:
            held.disconnect()
            return
        idle = self._idle.get(address)
        if idle is None:
            with self._lock:
                idle = self._idle.setdefault(address, [])
        idle.append(held)

    def round_trip(self, plan: Plan, receive: Receive) -> None:
        """`round_trip` sends every node's pipeline, then reads them in
        turn, handing each call to ``receive`` with its reply, its error
        reply, or the transport error, as soon as that is read."""
        sent = [Pipeline(address, calls) for address, calls in plan]
        try:
            for pipeline in sent:
                try:
                    held = self._take(pipeline.address)
                    pipeline.connection = held
                    pipeline.channel = sock = held.sock
                    assert sock is not None
                    # Call by call: the server starts on a call while the
                    # next one is packed (and its keys hashed).
                    paths, address = self.paths, pipeline.address
                    for call in pipeline.calls:
                        call.choose(paths, address)
                        sock.sendall(pipeline.wire(call))
                except Exception as exc:
                    dropped = pipeline.fail(exc)
                    if dropped is not None:
                        dropped.disconnect()
            for pipeline in sent:
                # The node's connection is forgotten before its replies are
                # handed on: if ``receive`` raises, it is already closed.
                connection = pipeline.reading(receive)
                if connection is not None:
                    self._receive(pipeline, connection, receive)
        except BaseException:
            # Interrupted mid-exchange: these connections' state is unknown.
            for pipeline in sent:
                connection = pipeline.detach()
                if connection is not None:
                    connection.disconnect()
            raise

    def _receive(self, pipeline: Pipeline, connection: Held, receive: Receive) -> None:
        # Reads the replies of ``pipeline``'s calls on ``connection``, then
        # keeps the connection if it is still in step, else drops it.
        sock = pipeline.channel
        usual = _cut_to_deadline(sock)
        try:
            complete = _read(sock, pipeline.counts, pipeline.deliver(receive), usual)
        except BaseException:
            connection.disconnect()
            raise
        if complete:
            if usual is not _NOT_CUT:
                sock.settimeout(usual)
            self._give(pipeline.address, connection)
        else:
            connection.disconnect()

    def call_one(self, call: Call) -> object:
        """`call_one` is `round_trip` of one new call (nothing to send ahead
        of it) to the single node, without a plan: sends it (FCALL or
        EVALSHA, as the node's path says) and returns its reply, its error
        reply or the transport error that ended it (as `round_trip` hands
        them on)."""
        call.choose(self.paths, None)
        return self._one(call.packed, current())

    def decide_one(
        self, packer: Packer, key: bytes, cost: int, budget: Budget | None
    ) -> tuple[bool, object]:
        """`decide_one` is `call_one` of the single decision of ``cost``
        for ``key`` packed by ``packer``, without a Call: whether it went
        out as FCALL (see :meth:`Call.choose`), and the outcome.
        ``budget`` is the running call's deadline (None: none)."""
        fcall, packed = single_command(packer, self.paths, key, cost)
        return fcall, self._one(packed, budget)

    def _one(self, packed: bytes, budget: Budget | None) -> object:
        # Sends ``packed`` (one command) to the single node and reads its
        # one reply: the reply, or the transport error that ended it.
        try:
            held = self._take(None)
        except Exception as exc:
            return exc
        sock = held.sock
        assert sock is not None
        try:
            sock.sendall(packed)
        except Exception as exc:
            held.disconnect()
            return exc
        except BaseException:
            held.disconnect()
            raise
        usual = _NOT_CUT if budget is None else _cut(sock, budget)
        reader = held.reader
        if reader is None:
            reader = held.reader = _resp.new_reader()
        try:
            complete, reply = _read_one(sock, reader, usual)
        except BaseException:
            held.disconnect()
            raise
        if complete:
            if usual is not _NOT_CUT:
                sock.settimeout(usual)
            self._give(None, held)
        else:
            held.disconnect()
        return reply

    def command(self, address: Address | None, *args: Any, asking: bool = False) -> Any:
        """`command` sends one command (after ASKING if ``asking``) and
        returns its reply (an error reply as a ResponseError); transport
        failures raise."""
        held = self._take(address)
        sock = held.sock
        assert sock is not None
        pieces = [ASKING] if asking else []
        pieces.append(pack_command(*args))
        replies: list[object] = []
        try:
            sock.sendall(b"".join(pieces))
            complete = _read(
                sock, [len(pieces)], lambda _, reply: replies.append(reply), _NOT_CUT
            )
        except BaseException:
            held.disconnect()
            raise
        if not complete:
            held.disconnect()
            failure = replies[0]
            assert isinstance(failure, BaseException)
            raise failure
        self._give(address, held)
        return replies[0]

    def close(self) -> None:
        """`close` disconnects every idle connection; later ones on return."""
        self._closed = True
        with self._lock:
            for idle in self._idle.values():
                while idle:
                    idle.pop().disconnect()


# `_cut_to_deadline`'s answer when it left the socket's timeout alone.
_NOT_CUT: Any = object()


def _cut_to_deadline(sock: socket.socket) -> Any:
    # Cuts ``sock``'s read timeout to the time left before the running
    # call's deadline when that is sooner, and returns the timeout to put
    # back once the replies are read (_NOT_CUT: not cut). One ContextVar
    # read without a deadline.
    budget = current()
    if budget is None:
        return _NOT_CUT
    return _cut(sock, budget)


def _cut(sock: socket.socket, budget: Budget) -> Any:
    # `_cut_to_deadline` with the running call's deadline ``budget``.
    usual = sock.gettimeout()
    left = budget.remaining()
    if usual is not None and left >= usual:
        return _NOT_CUT
    sock.settimeout(max(left, 1e-6))  # 0 would make the socket non-blocking
    return usual


def _deadline_error(exc: BaseException, usual: Any) -> DeadlineExceeded | None:
    # The error of a read that the running call's deadline cut short: the
    # caller ran out of time, Redis did nothing wrong, so it is no
    # transport error (the node's breaker and the failure policy never see
    # it). None for any other failure.
    if usual is _NOT_CUT or not isinstance(exc, TimeoutError):
        return None
    error = DeadlineExceeded("redis", None, 0.0)
    error.__cause__ = exc
    return error


def _read(
    sock: socket.socket,
    counts: list[int],
    deliver: Callable[[int, object], None],
    usual: Any,
) -> bool:
    # Reads each call's replies (see CallReplies) and delivers the call's
    # index and own reply as soon as it is complete; a failure part-way
    # delivers the error to every call left and returns False (the
    # connection is then unusable), and so does reading more than was
    # asked. Only the reading is guarded: what `deliver` raises is not a
    # transport error and propagates, and neither is a timeout that the
    # deadline cut (``usual`` is not _NOT_CUT): DeadlineExceeded.
    replies = CallReplies(counts)
    while replies.due:
        try:
            reply = replies.get()
            while reply is INCOMPLETE:
                replies.feed(sock.recv(RECV_SIZE))
                reply = replies.get()
        except (OSError, RedisConnectionError, ProtocolError) as exc:
            cut = _deadline_error(exc, usual)
            if cut is not None:
                raise cut from exc
            replies.fail(exc, deliver)
            return False
        deliver(replies.index - 1, reply)
    return replies.in_step


def _read_one(
    sock: socket.socket, reader: _resp.ReplyReader, usual: Any
) -> tuple[bool, object]:
    # `_read` of one reply with ``reader`` (holding no bytes yet): whether
    # the connection is still in step, and the reply (or the transport
    # error that ended it).
    try:
        reply: object = INCOMPLETE
        while reply is INCOMPLETE:
            data = sock.recv(RECV_SIZE)
            if not data:
                raise RedisConnectionError("Redis closed the connection")
            reader.feed(data)
            reply = reader.gets()
    except (OSError, RedisConnectionError, ProtocolError) as exc:
        cut = _deadline_error(exc, usual)
        if cut is not None:
            raise cut from exc
        return False, exc
    return not reader.has_data(), reply


def connection_factory(
    client: redis.Redis | RedisCluster, timeout: float
) -> tuple[Callable[[Address | None], SyncConnection], list[Address], Any, bool]:
    """`connection_factory` makes connections with ``client``'s settings and
    the backend's ``timeout``; also returns the cluster's seed addresses
    (empty for one node), the client's pool and whether it uses TLS."""
    if isinstance(client, RedisCluster):
        pool, nodes = start_pool(client)
        seeds = [(node.host, int(node.port)) for node in nodes]
    elif isinstance(client, redis.Redis):
        pool = client.connection_pool
        seeds = []
    else:
        raise wrong_client("redis.Redis or redis.RedisCluster", client)
    settings = connection_settings(
        pool.connection_kwargs, timeout, Retry(NoBackoff(), 0)
    )
    tls = uses_tls(pool.connection_class)
    return node_factory(pool.connection_class, settings), seeds, pool, tls
