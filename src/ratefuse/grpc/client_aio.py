"""`AsyncClientInterceptor`: :class:`ratefuse.grpc.ClientInterceptor` for
``grpc.aio`` channels.

grpc.aio takes one interceptor object per call kind, so
``AsyncClientInterceptor(...).interceptors()`` is the list to give the
channel: the interceptor itself (unary calls) and three siblings (the
streaming kinds) sharing its breaker and limiter::

    guard = AsyncClientInterceptor(CircuitBreaker("inventory"))
    channel = grpc.aio.insecure_channel(target, interceptors=guard.interceptors())

A call with one response is awaited inside the interceptor, so its outcome
is recorded before the caller sees it; a response stream's outcome is
recorded when it ends.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from ratefuse.core.errors import CircuitOpenError
from ratefuse.engine.breaker_forms import Breaker, BreakerPermit, start
from ratefuse.grpc.guard import DEFAULT_FAILURE_CODES, DEFAULT_MAX_WAIT, Guard


async def _permit(guard: Guard, breaker: Breaker) -> BreakerPermit:
    # The permit of an asyncio (fleet) breaker is awaited; a sync one's not.
    permit = breaker.permit_or_error()
    if inspect.isawaitable(permit):
        permit = await permit
    if isinstance(permit, CircuitOpenError):
        raise guard.rejected(permit)
    return permit


async def _single(guard: Guard, continuation: Any, details: Any, request: Any) -> Any:
    # A call with one response, its outcome recorded before it is returned.
    breaker = guard.breaker_for(details.method)
    if breaker is None:
        return await continuation(await guard.admit_async(details), request)
    permit = await _permit(guard, breaker)
    try:
        details = await guard.admit_async(details)
        start_ns = start(breaker, permit)
        call = await continuation(details, request)
        try:
            await call
        except grpc.aio.AioRpcError as error:  # the caller sees it when it awaits
            code, message = error.code(), error.details()
        else:
            code, message = grpc.StatusCode.OK, None
    except BaseException:
        permit.release()
        raise
    guard.record(breaker, permit, start_ns, code, message)
    return call


class _Streams:
    # Response streams: their outcome is read when gRPC reports them done.
    def __init__(self, guard: Guard) -> None:
        self.guard = guard
        self._recording: set[asyncio.Task[None]] = set()

    async def call(self, continuation: Any, details: Any, request: Any) -> Any:
        guard = self.guard
        breaker = guard.breaker_for(details.method)
        if breaker is None:
            return await continuation(await guard.admit_async(details), request)
        permit = await _permit(guard, breaker)
        try:
            details = await guard.admit_async(details)
            start_ns = start(breaker, permit)
            call = await continuation(details, request)
        except BaseException:
            permit.release()
            raise
        call.add_done_callback(functools.partial(self._done, breaker, permit, start_ns))
        return call

    def _done(self, breaker: Breaker, permit: Any, start_ns: int, call: Any) -> None:
        # An aio call's status is read by awaiting; it is there already.
        task = asyncio.get_running_loop().create_task(
            self._record(breaker, permit, start_ns, call)
        )
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    async def _record(
        self, breaker: Breaker, permit: Any, start_ns: int, call: Any
    ) -> None:
        code = await call.code()
        self.guard.record(breaker, permit, start_ns, code, await call.details())


class AsyncClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """`AsyncClientInterceptor` takes the options of
    :class:`ratefuse.grpc.ClientInterceptor`; its breakers may be asyncio
    ones (``AsyncFleetBreaker``) and its limiter is awaited
    (``acquire_async``). Give the channel `interceptors`. Use it from one
    event loop."""

    def __init__(
        self,
        breaker: Breaker | None = None,
        *,
        breaker_per_method: Callable[[str], Breaker] | None = None,
        limiter: Any = None,
        failure_codes: Iterable[grpc.StatusCode] = DEFAULT_FAILURE_CODES,
        max_wait: float = DEFAULT_MAX_WAIT,
        raise_circuit_open: bool = False,
        registry: object | None = None,
        client: str | None = None,
    ) -> None:
        self.guard = Guard(
            breaker,
            breaker_per_method,
            limiter,
            failure_codes,
            max_wait,
            raise_circuit_open,
        )
        if (registry is None) != (client is None):
            raise ValueError("registry and client go together")
        if client is not None:
            self.guard.follow(registry, client)
        self._streams = _Streams(self.guard)

    def interceptors(self) -> list[Any]:
        """`interceptors` are this interceptor and its siblings for the
        streaming call kinds, for ``grpc.aio.*_channel(interceptors=...)``."""
        return [
            self,
            _UnaryStream(self._streams),
            _StreamUnary(self.guard),
            _StreamStream(self._streams),
        ]

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """`intercept_unary_unary` guards a unary call."""
        return await _single(self.guard, continuation, client_call_details, request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await _single(
            self.guard, continuation, client_call_details, request_iterator
        )


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, streams: _Streams) -> None:
        self.streams = streams

    async def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return await self.streams.call(continuation, client_call_details, request)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, streams: _Streams) -> None:
        self.streams = streams

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self.streams.call(
            continuation, client_call_details, request_iterator
        )
