"""The server interceptors' ``call_deadline``: a handler runs under
``ratefuse.deadline`` of the time its call has left (sync grpc.server and
grpc.aio, unary and streaming), so the waits it starts are bounded by the
client's deadline; without the option, or for a call without a deadline,
nothing is set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

import ratefuse
from grpc_support import Gate, serve
from ratefuse.grpc import AsyncServerInterceptor, ServerInterceptor

SERVICE = "test.Deadline"


def _left() -> bytes:
    left = ratefuse.remaining()
    return b"none" if left is None else b"%.3f" % left


def _sync_service(server: Any) -> None:
    def left(request: bytes, context: Any) -> bytes:
        return _left()

    def left_stream(request: bytes, context: Any) -> Iterator[bytes]:
        yield _left()
        yield _left()

    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Left": grpc.unary_unary_rpc_method_handler(left),
                    "LeftStream": grpc.unary_stream_rpc_method_handler(left_stream),
                },
            ),
        )
    )


def _aio_service(server: Any) -> None:
    async def left(request: bytes, context: Any) -> bytes:
        return _left()

    async def left_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield _left()
        yield _left()

    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Left": grpc.unary_unary_rpc_method_handler(left),
                    "LeftStream": grpc.unary_stream_rpc_method_handler(left_stream),
                },
            ),
        )
    )


@pytest.mark.parametrize("kind", ["sync", "aio"])
@pytest.mark.parametrize("call_deadline", [True, False])
def test_handlers_run_under_the_calls_deadline(kind: str, call_deadline: bool) -> None:
    cls = ServerInterceptor if kind == "sync" else AsyncServerInterceptor
    interceptor = cls([], call_deadline=call_deadline)
    register = _sync_service if kind == "sync" else _aio_service
    with (
        serve(kind, [interceptor], Gate(), register) as address,
        grpc.insecure_channel(address) as channel,
    ):
        unary = channel.unary_unary(f"/{SERVICE}/Left")
        streaming = channel.unary_stream(f"/{SERVICE}/LeftStream")
        answers = [unary(b"", timeout=30), *streaming(b"", timeout=30)]
        without = [unary(b""), *streaming(b"")]
    if call_deadline:
        # gRPC reports a little more than the client asked (its own slack).
        assert all(0 < float(answer) <= 31 for answer in answers), answers
    else:
        assert answers == [b"none"] * 3
    assert without == [b"none"] * 3  # a call without a deadline sets none


def test_call_deadline_is_checked() -> None:
    with pytest.raises(ValueError, match="call_deadline must be True or False"):
        ServerInterceptor([], call_deadline="yes")  # type: ignore[arg-type]
