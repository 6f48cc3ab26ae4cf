"""The calls a `ratefuse.grpc.GuardedAioChannel` hands back besides the
real channel's and its ``GuardedUnaryCall`` (`ratefuse.grpc._unary_py`):
`RefusedCall` (refused locally: open breaker) and `PendingCall` (waits
for the outbound limiter or an asyncio breaker's permit, then starts the
real call in a task).

Both answer as a grpc.aio call does: awaited (a single response) or
iterated / ``read()`` (a response stream), with ``code()``,
``details()``, ``initial_metadata()``, ``trailing_metadata()``,
``debug_error_string()``, ``cancel()``, ``cancelled()``, ``done()``,
``time_remaining()``, ``add_done_callback()``, and for request streams
``write()`` and ``done_writing()``. A local refusal raises its error
(:class:`ratefuse.grpc.LocalRpcError`, or the CircuitOpenError with
``raise_circuit_open``) where the call's outcome is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from typing import Any

import grpc

from ratefuse.core.errors import CircuitOpenError
from ratefuse.grpc.status import UNAVAILABLE, LocalRpcError


def _code(error: BaseException) -> grpc.StatusCode:
    # The status of a call refused with ``error``.
    return error.code() if isinstance(error, LocalRpcError) else UNAVAILABLE


class RefusedCall:
    """`RefusedCall` is a call refused before it started: reading its
    outcome raises ``error``; its status is the error's."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __await__(self) -> Generator[Any, None, Any]:
        raise self.error
        yield  # a generator, as __await__ must be

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._responses()

    async def _responses(self) -> AsyncIterator[Any]:
        raise self.error
        yield  # an async generator

    async def read(self) -> Any:
        """`read` raises the refusal."""
        raise self.error

    async def write(self, request: Any) -> None:
        """`write` raises the refusal."""
        raise self.error

    async def done_writing(self) -> None:
        """`done_writing` has nothing to close."""

    async def wait_for_connection(self) -> None:
        """`wait_for_connection` raises the refusal."""
        raise self.error

    async def code(self) -> grpc.StatusCode:
        """`code` is the refusal's status code."""
        return _code(self.error)

    async def details(self) -> str:
        """`details` is the refusal's text."""
        return str(self.error)

    async def initial_metadata(self) -> tuple[Any, ...]:
        """`initial_metadata` is empty: nothing was received."""
        return ()

    async def trailing_metadata(self) -> Any:
        """`trailing_metadata` is the refusal's (the retry delay)."""
        if isinstance(self.error, LocalRpcError):
            return self.error.trailing_metadata()
        return ()

    async def debug_error_string(self) -> str:
        """`debug_error_string` names the refusal."""
        return repr(self.error)

    def cancel(self) -> bool:
        """`cancel` does nothing: the call is over."""
        return False

    def cancelled(self) -> bool:
        """`cancelled` is False: the call was refused, not cancelled."""
        return False

    def done(self) -> bool:
        """`done` is True."""
        return True

    def time_remaining(self) -> float | None:
        """`time_remaining` is None: the call has no deadline running."""
        return None

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """`add_done_callback` runs ``callback(self)`` soon, in the loop."""
        asyncio.get_running_loop().call_soon(callback, self)


class PendingCall:
    """`PendingCall` is a call that waits before it starts: ``starting``
    (run in a task) returns the real call or raises the refusal."""

    __slots__ = ("_starting",)

    def __init__(self, starting: Coroutine[Any, Any, Any]) -> None:
        self._starting = asyncio.ensure_future(starting)

    def __await__(self) -> Generator[Any, None, Any]:
        call = yield from self._starting.__await__()
        return (yield from call.__await__())

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._responses()

    async def _responses(self) -> AsyncIterator[Any]:
        async for response in await self._starting:
            yield response

    async def read(self) -> Any:
        """`read` is the next response (grpc.aio's ``read``)."""
        return await (await self._starting).read()

    async def write(self, request: Any) -> None:
        """`write` sends a request once the call has started."""
        await (await self._starting).write(request)

    async def done_writing(self) -> None:
        """`done_writing` ends the requests once the call has started."""
        await (await self._starting).done_writing()

    async def wait_for_connection(self) -> None:
        """`wait_for_connection` waits for the call to start and connect."""
        await (await self._starting).wait_for_connection()

    async def _refusal(self) -> BaseException | None:
        # The error the call was refused with (None: it started).
        try:
            await self._starting
        except (LocalRpcError, CircuitOpenError) as error:
            return error
        return None

    async def code(self) -> grpc.StatusCode:
        """`code` is the call's status code (the refusal's if refused)."""
        error = await self._refusal()
        if error is not None:
            return _code(error)
        code: grpc.StatusCode = await self._starting.result().code()
        return code

    async def details(self) -> str:
        """`details` is the call's status message."""
        error = await self._refusal()
        if error is not None:
            return str(error)
        details: str = await self._starting.result().details()
        return details

    async def initial_metadata(self) -> Any:
        """`initial_metadata` is the call's (empty if refused)."""
        error = await self._refusal()
        return (
            ()
            if error is not None
            else await self._starting.result().initial_metadata()
        )

    async def trailing_metadata(self) -> Any:
        """`trailing_metadata` is the call's (the refusal's if refused)."""
        error = await self._refusal()
        if isinstance(error, LocalRpcError):
            return error.trailing_metadata()
        if error is not None:
            return ()
        return await self._starting.result().trailing_metadata()

    async def debug_error_string(self) -> str:
        """`debug_error_string` is the call's (names the refusal)."""
        error = await self._refusal()
        if error is not None:
            return repr(error)
        text: str = await self._starting.result().debug_error_string()
        return text

    def _started(self) -> Any:
        # The real call if it has started, else None.
        starting = self._starting
        if not starting.done() or starting.cancelled():
            return None
        return None if starting.exception() is not None else starting.result()

    def cancel(self) -> bool:
        """`cancel` cancels the wait, or the call once started."""
        call = self._started()
        if call is not None:
            return bool(call.cancel())
        return self._starting.cancel()

    def cancelled(self) -> bool:
        """`cancelled` is whether the wait or the call was cancelled."""
        call = self._started()
        return self._starting.cancelled() if call is None else bool(call.cancelled())

    def done(self) -> bool:
        """`done` is whether the call has ended (or was refused)."""
        call = self._started()
        return self._starting.done() if call is None else bool(call.done())

    def time_remaining(self) -> float | None:
        """`time_remaining` is the started call's (None while waiting)."""
        call = self._started()
        return None if call is None else call.time_remaining()

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        """`add_done_callback` runs ``callback(self)`` when the call ends."""

        def started(starting: asyncio.Future[Any]) -> None:
            call = self._started()
            if call is None:
                callback(self)
            else:
                call.add_done_callback(lambda _: callback(self))

        self._starting.add_done_callback(started)
