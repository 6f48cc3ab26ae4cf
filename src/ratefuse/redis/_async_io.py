"""The redis.asyncio I/O of the Redis backend: the asyncio twin of
:mod:`._sync_io`, reading and writing the connections' streams."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from ratefuse.core.errors import DeadlineExceeded
from ratefuse.engine.deadline import current
from ratefuse.redis._codec import ASKING, Packer, pack_command
from ratefuse.redis._connection import (
    connection_settings,
    node_factory,
    start_nodes,
    uses_tls,
    wrong_client,
)
from ratefuse.redis._exchange import Plan, Receive, single_command
from ratefuse.redis._pipeline import Pipeline
from ratefuse.redis._resp import INCOMPLETE, CallReplies, ProtocolError
from ratefuse.redis._script_paths import ScriptPaths
from ratefuse.redis._sentinel import SentinelWatch
from ratefuse.redis._slots import Address

if sys.version_info >= (3, 11):
    from asyncio import timeout as async_timeout
else:  # redis-py depends on async-timeout before 3.11.3
    from async_timeout import (  # type: ignore[import-not-found, unused-ignore]
        timeout as async_timeout,
    )

RECV_SIZE = 1 << 16
# Calls on redis.asyncio connections are partly untyped: Any.
AsyncConnection = Any


def _streams(
    connection: AsyncConnection,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    # The streams of a connected redis.asyncio connection (None if closed).
    # The attributes are private but have been there since redis.asyncio
    # began (aioredis).
    reader = getattr(connection, "_reader", None)
    writer = getattr(connection, "_writer", None)
    if reader is None or writer is None:
        return None
    return reader, writer


class AsyncTransport:
    """`AsyncTransport` holds idle connections per node and runs rounds:
    the asyncio twin of :class:`._sync_io.SyncTransport`, reading and writing
    the connection's streams itself, each node's round bounded by
    ``timeout`` seconds; ``watch`` and ``tls`` as there. One event loop."""

    def __init__(
        self,
        factory: Callable[[Address | None], AsyncConnection],
        timeout: float,
        watch: SentinelWatch | None = None,
        tls: bool = False,
    ) -> None:
        self._factory = factory
        self.tls = tls
        # How each node runs single decisions (FCALL or EVALSHA).
        self.paths = ScriptPaths()
        self._watch = watch
        self._timeout = timeout
        self._idle: dict[Address | None, list[AsyncConnection]] = {}
        self._closed = False

    async def _take(
        self, address: Address | None
    ) -> tuple[AsyncConnection, asyncio.StreamReader, asyncio.StreamWriter]:
        watch = self._watch
        if watch is not None:
            await watch.aask()
        idle = self._idle.get(address)
        connection = idle.pop() if idle else self._factory(address)
        try:
            streams = _streams(connection)
            if streams is not None and watch is not None and watch.stale(connection):
                await connection.disconnect()  # the sentinels name another primary
                streams = None
            # See SyncTransport._take: reconnect before sending.
            if streams is not None and (streams[0].at_eof() or streams[1].is_closing()):
                await connection.disconnect()
                streams = None
            if streams is None:
                await connection.connect()
                streams = _streams(connection)
                if streams is None:
                    raise RedisConnectionError("redis-py connection has no streams")
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        return connection, streams[0], streams[1]

    async def _give(self, address: Address | None, connection: AsyncConnection) -> None:
        if self._closed:
            await connection.disconnect()
            return
        self._idle.setdefault(address, []).append(connection)

    async def round_trip(self, plan: Plan, receive: Receive) -> None:
        """`round_trip`: see SyncTransport.round_trip."""
        sent = [Pipeline(address, calls) for address, calls in plan]
        try:
            for pipeline in sent:
                try:
                    taken = await self._take(pipeline.address)
                    pipeline.connection, pipeline.channel, writer = taken
                    # Call by call, as SyncTransport.round_trip: the
                    # transport sends at once while its buffer is empty.
                    paths, address = self.paths, pipeline.address
                    for call in pipeline.calls:
                        call.choose(paths, address)
                        writer.write(pipeline.wire(call))
                except Exception as exc:
                    dropped = pipeline.fail(exc)
                    if dropped is not None:
                        await dropped.disconnect(nowait=True)
            for pipeline in sent:
                connection = pipeline.reading(receive)
                if connection is not None:
                    await self._receive(pipeline, connection, receive)
        except BaseException:
            # Cancelled mid-exchange: these connections' state is unknown.
            for pipeline in sent:
                connection = pipeline.detach()
                if connection is not None:
                    await connection.disconnect(nowait=True)
            raise

    async def _receive(
        self, pipeline: Pipeline, connection: AsyncConnection, receive: Receive
    ) -> None:
        # See SyncTransport._receive; the node's replies within the timeout.
        try:
            complete = await _read(
                pipeline.channel,
                pipeline.counts,
                self._timeout,
                pipeline.deliver(receive),
            )
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        if complete:
            await self._give(pipeline.address, connection)
        else:
            await connection.disconnect(nowait=True)

    async def decide_one(
        self, packer: Packer, key: bytes, cost: int
    ) -> tuple[bool, object]:
        """`decide_one`: see SyncTransport.decide_one (the running call's
        deadline is read as the reply is)."""
        fcall, packed = single_command(packer, self.paths, key, cost)
        try:
            connection, reader, writer = await self._take(None)
        except Exception as exc:
            return fcall, exc
        replies: list[object] = []
        try:
            writer.write(packed)
            complete = await _read(
                reader, [1], self._timeout, lambda _, reply: replies.append(reply)
            )
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        if complete:
            await self._give(None, connection)
        else:
            await connection.disconnect(nowait=True)
        return fcall, replies[0]

    async def command(
        self, address: Address | None, *args: Any, asking: bool = False
    ) -> Any:
        """`command`: see SyncTransport.command."""
        connection, reader, writer = await self._take(address)
        pieces = [ASKING] if asking else []
        pieces.append(pack_command(*args))
        replies: list[object] = []
        try:
            writer.write(b"".join(pieces))
            complete = await _read(
                reader,
                [len(pieces)],
                self._timeout,
                lambda _, reply: replies.append(reply),
                within_deadline=False,  # the backend's own commands
            )
        except BaseException:
            await connection.disconnect(nowait=True)
            raise
        if not complete:
            await connection.disconnect(nowait=True)
            failure = replies[0]
            assert isinstance(failure, BaseException)
            raise failure
        await self._give(address, connection)
        return replies[0]

    async def close(self) -> None:
        """`close` disconnects every idle connection; later ones on return."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                await idle.pop().disconnect()


async def _read(
    reader: asyncio.StreamReader,
    counts: list[int],
    timeout: float,
    deliver: Callable[[int, object], None],
    within_deadline: bool = True,
) -> bool:
    # See _sync_io._read; the whole node's replies within `timeout`, or
    # within the running call's deadline if that is sooner (a read it cuts
    # short raises DeadlineExceeded: no transport error).
    replies = CallReplies(counts)
    loop = asyncio.get_running_loop()
    budget = current() if within_deadline else None
    cut = False
    if budget is not None:
        left = budget.remaining()
        if left < timeout:
            timeout, cut = left, True
    deadline = loop.time() + timeout
    while replies.due:
        try:
            async with async_timeout(max(0.0, deadline - loop.time())):
                reply = replies.get()
                while reply is INCOMPLETE:
                    replies.feed(await reader.read(RECV_SIZE))
                    reply = replies.get()
        except (
            OSError,
            asyncio.TimeoutError,
            RedisConnectionError,
            ProtocolError,
        ) as exc:
            if cut and isinstance(exc, asyncio.TimeoutError):
                raise DeadlineExceeded("redis", None, 0.0) from exc
            replies.fail(exc, deliver)
            return False
        deliver(replies.index - 1, reply)
    return replies.in_step


def connection_factory(
    client: redis.asyncio.Redis | RedisCluster, timeout: float
) -> tuple[Callable[[Address | None], AsyncConnection], list[Address], Any, bool]:
    """`connection_factory`: see _sync_io.connection_factory."""
    if isinstance(client, RedisCluster):
        nodes = start_nodes(client)
        base, connection_class = nodes[0].connection_kwargs, nodes[0].connection_class
        seeds = [(node.host, int(node.port)) for node in nodes]
        pool = None
    elif isinstance(client, redis.asyncio.Redis):
        pool = client.connection_pool
        base, connection_class = pool.connection_kwargs, pool.connection_class
        seeds = []
    else:
        raise wrong_client("redis.asyncio.Redis or redis.asyncio.RedisCluster", client)
    retry = Retry(NoBackoff(), 0)
    settings = connection_settings(base, timeout, retry)
    tls = uses_tls(connection_class)
    return node_factory(connection_class, settings), seeds, pool, tls
