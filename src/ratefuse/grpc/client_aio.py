"""`AsyncClientInterceptor`: :class:`ratefuse.grpc.ClientInterceptor` for
``grpc.aio`` channels.

grpc.aio takes one interceptor object per call kind, so
``AsyncClientInterceptor(...).interceptors()`` is the list to give the
channel: the interceptor itself (unary calls) and three siblings (the
streaming kinds) sharing its breaker and limiter::

    guard = AsyncClientInterceptor(CircuitBreaker("inventory"))
    channel = grpc.aio.insecure_channel(target, interceptors=guard.interceptors())

A call with one response is awaited inside the interceptor, so its outcome
is recorded before the caller sees it; a response stream's is recorded
when gRPC reports the call done.
"""

from __future__ import annotations

import functools
from typing import Any

import grpc

from ratefuse.core.errors import CircuitOpenError
from ratefuse.engine.breaker_forms import UNTIMED, Breaker, BreakerPermit, start
from ratefuse.grpc.guard import Guard, Guarded


async def _resolved(guard: Guard, permit: Any) -> BreakerPermit:
    # A rejection raises; an asyncio (fleet) breaker's permit is awaited.
    if isinstance(permit, CircuitOpenError):
        raise guard.rejected(permit)
    permit = await permit
    if isinstance(permit, CircuitOpenError):
        raise guard.rejected(permit)
    resolved: BreakerPermit = permit
    return resolved


async def _guarded(
    guard: Guard, continuation: Any, details: Any, request: Any, single: bool
) -> Any:
    # Every call kind: the breaker's permit, the limiter's wait, the call,
    # and its outcome: a ``single`` response is awaited here (the caller's
    # await then finds it there), a stream's is read when gRPC reports the
    # call done.
    breaker = guard.breaker_for(details.method)
    if breaker is None:
        if guard.limiter is not None:
            details = await guard.admit_async(details)
        return await continuation(details, request)
    permit: Any = breaker.permit_or_error()
    if not hasattr(permit, "on_success"):
        permit = await _resolved(guard, permit)
    try:
        if guard.limiter is not None:
            details = await guard.admit_async(details)
        start_ns = start(breaker, permit)
        call = await continuation(details, request)
    except BaseException:
        permit.release()
        raise
    if not single:
        call.add_done_callback(
            functools.partial(_done, guard, breaker, permit, start_ns)
        )
        return call
    try:
        await call
    except grpc.aio.AioRpcError as error:  # the caller's await raises it too
        guard.record(breaker, permit, start_ns, error.code(), error.details())
    except BaseException:
        permit.release()  # cancelled: no outcome
        raise
    else:
        if start_ns == UNTIMED:
            permit.on_success(0.0)
        else:
            guard.record(breaker, permit, start_ns, grpc.StatusCode.OK, None)
    return call


def _now(coroutine: Any) -> Any:
    # The value of a coroutine that returns without suspending, as a done
    # aio call's code() and details() do; NotImplemented if it would wait.
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    return NotImplemented


def _done(
    guard: Guard, breaker: Breaker, permit: Any, start_ns: int, call: Any
) -> None:
    # gRPC's done callback: the call has its status.
    code, message = _now(call.code()), _now(call.details())
    if code is NotImplemented or message is NotImplemented:
        permit.release()  # no status to judge by: no outcome
        return
    guard.record(breaker, permit, start_ns, code, message)


class AsyncClientInterceptor(Guarded, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """`AsyncClientInterceptor` takes the options of
    :class:`ratefuse.grpc.ClientInterceptor`; its breakers may be asyncio
    ones (``AsyncFleetBreaker``) and its limiter is awaited
    (``acquire_async``). Give the channel `interceptors`. Use it from one
    event loop."""

    def interceptors(self) -> list[Any]:
        """`interceptors` are this interceptor and its siblings for the
        streaming call kinds, for ``grpc.aio.*_channel(interceptors=...)``."""
        return [
            self,
            _UnaryStream(self.guard),
            _StreamUnary(self.guard),
            _StreamStream(self.guard),
        ]

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """`intercept_unary_unary` guards a unary call."""
        return await _guarded(
            self.guard, continuation, client_call_details, request, True
        )


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await _guarded(
            self.guard, continuation, client_call_details, request_iterator, True
        )


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await _guarded(
            self.guard, continuation, client_call_details, request, False
        )


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await _guarded(
            self.guard, continuation, client_call_details, request_iterator, False
        )
