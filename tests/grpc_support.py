"""Real gRPC servers for the interceptor tests: a sync ``grpc.server`` or a
``grpc.aio`` server (in a thread of its own, with its own event loop) on a
free 127.0.0.1 port, serving generic bytes-in/bytes-out handlers of the
service ``test.Echo``; stopped on exit. Both kinds serve the same methods:

- ``Say``: unary, answers the request.
- ``Hold``: unary, waits until ``Gate.release`` (or the call ends) and
  counts the handlers running in ``Gate.running``.
- ``Count``: response stream of ``int(request)`` messages.
- ``Sum``: request stream, answers the number of messages.
- ``HoldStream``: response stream, one message, then waits as Hold.
- ``Fail``: unary, ends with the status named in ``Gate.failure``.
- ``Chat``: bidirectional, answers each message upper-cased.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent import futures
from typing import Any

import grpc

SERVICE = "test.Echo"
Register = Callable[[Any], None]
WAIT = 10.0  # seconds any test waits for an event before failing


class Gate:
    """`Gate` lets a test hold the Hold handlers and watch them: ``running``
    counts handlers inside; ``entered`` is set when one enters; ``ended``
    when one leaves; ``failure`` is the status Fail answers; ``calls``
    counts the Say and Fail calls that reached the server, and ``during``
    (if set) runs inside them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.entered = threading.Event()
        self.ended = threading.Event()
        self.released = threading.Event()
        self.failure = grpc.StatusCode.UNAVAILABLE
        self.calls = 0
        self.during: Callable[[], None] | None = None

    def arrive(self) -> None:
        with self.lock:
            self.calls += 1
        if self.during is not None:
            self.during()

    def enter(self) -> None:
        with self.lock:
            self.running += 1
        self.entered.set()

    def leave(self) -> None:
        with self.lock:
            self.running -= 1
        self.ended.set()


def generic(*behaviors: Any) -> grpc.GenericRpcHandler:
    """`generic` serves the behaviors of Say, Hold, Count, Sum, HoldStream,
    Fail and Chat, in that order, as ``test.Echo``."""
    kinds = (
        ("Say", grpc.unary_unary_rpc_method_handler),
        ("Hold", grpc.unary_unary_rpc_method_handler),
        ("Count", grpc.unary_stream_rpc_method_handler),
        ("Sum", grpc.stream_unary_rpc_method_handler),
        ("HoldStream", grpc.unary_stream_rpc_method_handler),
        ("Fail", grpc.unary_unary_rpc_method_handler),
        ("Chat", grpc.stream_stream_rpc_method_handler),
    )
    handlers = {
        name: make(behavior)
        for (name, make), behavior in zip(kinds, behaviors, strict=True)
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def sync_handlers(gate: Gate) -> grpc.GenericRpcHandler:
    def say(request: bytes, context: Any) -> bytes:
        gate.arrive()
        return request

    def hold(request: bytes, context: Any) -> bytes:
        gate.enter()
        try:
            ended = threading.Event()
            context.add_callback(ended.set)
            while not (gate.released.is_set() or ended.is_set()):
                gate.released.wait(0.01)
            return b"done"
        finally:
            gate.leave()

    def count(request: bytes, context: Any) -> Iterator[bytes]:
        for index in range(int(request)):
            yield b"%d" % index

    def total(requests: Iterator[bytes], context: Any) -> bytes:
        return b"%d" % sum(1 for _ in requests)

    def hold_stream(request: bytes, context: Any) -> Iterator[bytes]:
        yield b"first"
        hold(request, context)

    def chat(requests: Iterator[bytes], context: Any) -> Iterator[bytes]:
        for request in requests:
            yield request.upper()

    def fail(request: bytes, context: Any) -> bytes:
        gate.arrive()
        if gate.failure != grpc.StatusCode.OK:
            context.abort(gate.failure, "failing on purpose")
        return b"ok"

    return generic(say, hold, count, total, hold_stream, fail, chat)


def aio_handlers(gate: Gate) -> grpc.GenericRpcHandler:
    async def say(request: bytes, context: Any) -> bytes:
        gate.arrive()
        return request

    async def hold(request: bytes, context: Any) -> bytes:
        gate.enter()
        try:
            while not gate.released.is_set():
                await asyncio.sleep(0.01)
            return b"done"
        finally:
            gate.leave()

    async def count(request: bytes, context: Any) -> Any:
        for index in range(int(request)):
            yield b"%d" % index

    async def total(requests: Any, context: Any) -> bytes:
        seen = 0
        async for _ in requests:
            seen += 1
        return b"%d" % seen

    async def hold_stream(request: bytes, context: Any) -> Any:
        yield b"first"
        await hold(request, context)

    async def chat(requests: Any, context: Any) -> Any:
        async for request in requests:
            yield request.upper()

    async def fail(request: bytes, context: Any) -> bytes:
        gate.arrive()
        if gate.failure != grpc.StatusCode.OK:
            await context.abort(gate.failure, "failing on purpose")
        return b"ok"

    return generic(say, hold, count, total, hold_stream, fail, chat)


@contextlib.contextmanager
def serve_sync(
    interceptors: list[Any], gate: Gate, register: Register | None = None
) -> Iterator[str]:
    """`serve_sync` runs a sync grpc.server (``register`` adds servicers);
    yields its address."""
    pool = futures.ThreadPoolExecutor(max_workers=8)
    server = grpc.server(pool, interceptors=interceptors)
    server.add_generic_rpc_handlers((sync_handlers(gate),))
    if register is not None:
        register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        gate.released.set()
        server.stop(None).wait(WAIT)
        pool.shutdown(wait=True)


@contextlib.contextmanager
def serve_aio(
    interceptors: list[Any],
    gate: Gate,
    register: Register | None = None,
    on_stop: Callable[[], Awaitable[object]] | None = None,
) -> Iterator[str]:
    """`serve_aio` runs a grpc.aio server in a thread with its own event
    loop (``register`` adds servicers, in that loop; ``on_stop`` is awaited
    there once the server has stopped); yields its address."""
    started: futures.Future[int] = futures.Future()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        server = grpc.aio.server(interceptors=interceptors)
        server.add_generic_rpc_handlers((aio_handlers(gate),))
        if register is not None:
            register(server)
        try:
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
        except BaseException as exc:
            started.set_exception(exc)
            raise
        started.set_result(port)
        await stop.wait()
        await server.stop(None)
        if on_stop is not None:
            await on_stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),))
    thread.start()
    try:
        yield f"127.0.0.1:{started.result(WAIT)}"
    finally:
        gate.released.set()
        loop.call_soon_threadsafe(stop.set)
        thread.join(WAIT)
        loop.close()


def serve(
    kind: str, interceptors: list[Any], gate: Gate, register: Register | None = None
) -> Any:
    """`serve` is `serve_sync` or `serve_aio` by ``kind``."""
    return (serve_sync if kind == "sync" else serve_aio)(interceptors, gate, register)


def method(channel: grpc.Channel, name: str, kind: str = "unary_unary") -> Any:
    """`method` is the bytes multicallable of ``/test.Echo/name``."""
    return getattr(channel, kind)(f"/{SERVICE}/{name}")
