"""Running a gRPC handler under its call's deadline.

With ``call_deadline=True`` the server interceptors run each handler
inside ``ratefuse.deadline(context.time_remaining())``, so every wait in
ratefuse that the handler starts (a limiter's ``acquire``, a bulkhead's
queue, a breaker's ``timeout=``, a Redis round trip, a retry) is bounded
by what is left of the client's deadline, as the web middleware's
``deadline_from`` does for HTTP. A call without a deadline runs as it is.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from ratefuse.engine.deadline import deadline

Behavior = Callable[[Any, Any], Any]

_KINDS = ("unary_unary", "stream_unary", "unary_stream", "stream_stream")


# A call without a deadline reports a time left of about 2^63 ns (or None
# on some servers): anything past a year is no deadline.
NO_DEADLINE_S = 365 * 24 * 3600.0


def _left(context: Any) -> float | None:
    # The seconds left before the call's deadline (None: it has none).
    left = context.time_remaining()
    if left is None or left >= NO_DEADLINE_S:
        return None
    return max(0.0, float(left))


def _sync_unary(inner: Behavior) -> Behavior:
    def behavior(request: Any, context: Any) -> Any:
        left = _left(context)
        if left is None:
            return inner(request, context)
        with deadline(left):
            return inner(request, context)

    return behavior


def _sync_streaming(inner: Behavior) -> Behavior:
    def behavior(request: Any, context: Any) -> Iterator[Any]:
        left = _left(context)
        if left is None:
            yield from inner(request, context)
            return
        with deadline(left):
            yield from inner(request, context)

    return behavior


def _aio_unary(inner: Behavior) -> Behavior:
    async def behavior(request: Any, context: Any) -> Any:
        left = _left(context)
        if left is None:
            return await inner(request, context)
        async with deadline(left):
            return await inner(request, context)

    return behavior


def _aio_streaming(inner: Behavior) -> Behavior:
    async def responses_of(request: Any, context: Any) -> AsyncIterator[Any]:
        responses = inner(request, context)
        if inspect.isawaitable(responses):  # a context.write handler
            await responses
            return
        async for response in responses:
            yield response

    async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
        left = _left(context)
        if left is None:
            async for response in responses_of(request, context):
                yield response
            return
        async with deadline(left):
            async for response in responses_of(request, context):
                yield response

    return behavior


def under_call_deadline(handler: Any, aio: bool) -> Any:
    """`under_call_deadline` is ``handler`` (a grpc RpcMethodHandler) with
    its behavior run under the call's deadline (``aio``: a grpc.aio
    server's handler, whose behaviors are coroutines)."""
    for kind in _KINDS:
        inner = getattr(handler, kind)
        if inner is None:
            continue
        streaming = kind.endswith("_stream")
        if aio:
            made = _aio_streaming(inner) if streaming else _aio_unary(inner)
        else:
            made = _sync_streaming(inner) if streaming else _sync_unary(inner)
        return handler._replace(**{kind: made})
    raise ValueError(f"handler {handler!r} has no behavior")
