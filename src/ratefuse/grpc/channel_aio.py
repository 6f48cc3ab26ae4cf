"""`GuardedAioChannel`: :class:`ratefuse.grpc.AsyncClientInterceptor`'s
breaker and outbound limiter on a ``grpc.aio.Channel``, without grpc.aio's
interceptor machinery.

grpc.aio runs every intercepted call in a task of its own, which costs a
third of a trivial unary call by itself; this wrapper instead hands back
the real channel's call, with the breaker's permit taken before it
starts. A call with one response is a `GuardedUnaryCall` (the real call,
whose outcome is recorded where it is awaited; one never awaited counts
as nothing); a response stream's outcome is recorded by the call's done
callback, when its status arrives. The common unary call (a local
breaker nothing swaps, no limiter, no slow-call tracking) is compiled
(``ratefuse.grpc._unary_c``, the twin of `ratefuse.grpc._unary_py`)::

    channel = GuardedAioChannel(
        grpc.aio.insecure_channel(target), CircuitBreaker("inventory")
    )
    reply = await channel.unary_unary("/inventory.Stock/Get")(request)

Generated stubs take it as their channel. A call that must wait before it
starts (for an outbound limiter, or an asyncio breaker's permit such as
``AsyncFleetBreaker``'s) is a `ratefuse.grpc.call_aio.PendingCall` that
starts the real call in a task. Calls the guard refuses (open breaker, no
capacity in time) fail when awaited or iterated, as an intercepted call
does, without touching the network.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from ratefuse.core.errors import CircuitOpenError
from ratefuse.core.implementation import load
from ratefuse.engine.breaker_forms import UNTIMED, Breaker, start
from ratefuse.grpc.call_aio import PendingCall, RefusedCall
from ratefuse.grpc.client_aio import _now, _resolved
from ratefuse.grpc.guard import (
    DEFAULT_FAILURE_CODES,
    DEFAULT_MAX_WAIT,
    Guard,
    Guarded,
)

Options = dict[str, Any]
OK = grpc.StatusCode.OK
# `GuardedUnaryCall` and the common unary call: the process's twin.
UNARY = load("grpc._unary")


class GuardedAioChannel(Guarded, grpc.aio.Channel):  # type: ignore[misc]
    """`GuardedAioChannel` wraps ``channel`` (a ``grpc.aio.Channel``) and
    takes the options of :class:`ratefuse.grpc.ClientInterceptor`; its
    breakers may be asyncio ones (``AsyncFleetBreaker``) and its limiter is
    awaited (``acquire_async``). ``close``, ``channel_ready``,
    ``get_state``, ``wait_for_state_change`` and ``async with`` are the
    wrapped channel's. Use it from the channel's event loop."""

    def __init__(
        self,
        channel: grpc.aio.Channel,
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
        if not isinstance(channel, grpc.aio.Channel):
            raise TypeError(f"channel must be a grpc.aio.Channel, got {channel!r}")
        super().__init__(
            breaker,
            breaker_per_method=breaker_per_method,
            limiter=limiter,
            failure_codes=failure_codes,
            max_wait=max_wait,
            raise_circuit_open=raise_circuit_open,
            registry=registry,
            client=client,
        )
        self.channel = channel

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`unary_unary` is the guarded multicallable of a unary method."""
        real = self.channel.unary_unary(method, *args, **kwargs)
        return guarded(self.guard, method, real, True)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`unary_stream` is the guarded multicallable of a response stream;
        its outcome is recorded when the stream ends."""
        real = self.channel.unary_stream(method, *args, **kwargs)
        return guarded(self.guard, method, real, False)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`stream_unary` is the guarded multicallable of a request stream."""
        real = self.channel.stream_unary(method, *args, **kwargs)
        return guarded(self.guard, method, real, True)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """`stream_stream` is the guarded multicallable of a bidirectional
        stream."""
        real = self.channel.stream_stream(method, *args, **kwargs)
        return guarded(self.guard, method, real, False)

    async def __aenter__(self) -> GuardedAioChannel:
        await self.channel.__aenter__()
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.channel.__aexit__(*exc_info)

    async def close(self, grace: float | None = None) -> None:
        """`close` closes the wrapped channel (see ``grpc.aio.Channel``)."""
        await self.channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        """`get_state` is the wrapped channel's connectivity."""
        return self.channel.get_state(try_to_connect)

    async def wait_for_state_change(
        self, last_observed_state: grpc.ChannelConnectivity
    ) -> None:
        """`wait_for_state_change` waits on the wrapped channel."""
        await self.channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        """`channel_ready` waits until the wrapped channel is READY."""
        await self.channel.channel_ready()


def guarded(guard: Guard, method: str, real: Any, single: bool) -> Any:
    """`guarded` is the multicallable of ``method`` (``real`` is the
    channel's; ``single``: its calls have one response): ``real`` itself
    when nothing guards it (no breaker, no limiter, no registry), the
    common unary one of `UNARY` where that applies, else a
    `GuardedMultiCallable`."""
    if guard.breaker_is_fixed and guard.breaker is None and guard.limiter is None:
        return real
    general = GuardedMultiCallable(guard, method, real, single)
    return UNARY.unary_multicallable(general, real, guard) if single else general


# `GuardedMultiCallable._fixed` when the breaker is asked at each call.
_ASK: Any = object()


class GuardedMultiCallable:
    """`GuardedMultiCallable` is a multicallable of a `GuardedAioChannel`:
    called with the real one's arguments, it returns the real call (in a
    `GuardedUnaryCall` if ``single``: the call has one response), a
    `PendingCall` (one that waits before it starts) or a `RefusedCall`."""

    __slots__ = ("_fixed", "_guard", "_method", "_real", "_single")

    def __init__(self, guard: Guard, method: str, real: Any, single: bool) -> None:
        self._guard = guard
        self._method = method
        self._real = real
        self._single = single
        # The breaker of every call when nothing can change it (no registry
        # to reload, no breaker per method): asked once, not per call.
        self._fixed: Any = guard.breaker if guard.breaker_is_fixed else _ASK

    def __call__(self, *request: Any, **options: Any) -> Any:
        # ``request``: the request, or the request iterator (none at all
        # for a request stream written with ``write``), as grpc.aio takes it.
        guard = self._guard
        breaker = self._fixed
        if breaker is _ASK:
            breaker = guard.breaker_for(self._method)
        if guard.limiter is not None:
            return PendingCall(self._start(breaker, None, request, options))
        if breaker is None:
            return self._real(*request, **options)
        # The real call starts now (grpc.aio sends it at once), so this is
        # as late as the permit can be taken.
        permit: Any = breaker.permit_or_error()
        if isinstance(permit, CircuitOpenError):
            return RefusedCall(guard.rejected(permit))
        if not hasattr(permit, "on_success"):  # an asyncio breaker's, awaited
            return PendingCall(self._start(breaker, permit, request, options))
        return self._launch(breaker, permit, request, options)

    def _launch(
        self, breaker: Breaker, permit: Any, request: tuple[Any, ...], options: Options
    ) -> Any:
        # Starts the real call under ``permit``. A single response's outcome
        # is recorded where it is awaited (a done callback would cost more
        # than all the rest: grpc.aio reads a status only in a coroutine), a
        # stream's by the call's done callback.
        guard = self._guard
        try:
            start_ns = start(breaker, permit)
            call = self._real(*request, **options)
        except BaseException:
            permit.release()
            raise
        if self._single:
            return UNARY.GuardedUnaryCall(call, guard, breaker, permit, start_ns)
        call.add_done_callback(
            functools.partial(_finished, guard, breaker, permit, start_ns)
        )
        return call

    async def _start(
        self,
        breaker: Breaker | None,
        permit: Any,
        request: tuple[Any, ...],
        options: Options,
    ) -> Any:
        # A call that waits first: the breaker's permit (taken here unless
        # given; awaited if it is an asyncio breaker's), then the limiter's
        # unit within the call's timeout; the real call starts with what is
        # left of that timeout.
        guard = self._guard
        if breaker is None:
            return self._real(*request, **await _admitted(guard, options))
        if permit is None:
            permit = breaker.permit_or_error()
        if not hasattr(permit, "on_success"):
            permit = await _resolved(guard, permit)
        try:
            if guard.limiter is not None:
                options = await _admitted(guard, options)
        except BaseException:
            permit.release()
            raise
        return self._launch(breaker, permit, request, options)


def _finished(
    guard: Guard, breaker: Breaker, permit: Any, start_ns: int, call: Any
) -> None:
    # A response stream's done callback: the call has its status, read
    # without waiting; its details only for a failure (reading them costs
    # as much as the code).
    code = _now(call.code())
    if code is OK and start_ns == UNTIMED:
        permit.on_success(0.0)
        return
    message = None if code is OK else _now(call.details())
    if code is NotImplemented or message is NotImplemented:
        permit.release()  # no status to judge by: no outcome
        return
    guard.record(breaker, permit, start_ns, code, message)


class _Timeout:
    # The part of a call's details the guard's limiter steps read.
    __slots__ = ("timeout",)

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout

    def _replace(self, timeout: float) -> _Timeout:
        return _Timeout(timeout)


async def _admitted(guard: Guard, options: Options) -> Options:
    # ``options`` once the limiter's unit is taken, with the rest of the
    # call's timeout (`Guard.admit_async`).
    if guard.limiter is None:
        return options
    waited = await guard.admit_async(_Timeout(options.get("timeout")))
    if waited.timeout is None:
        return options
    return {**options, "timeout": waited.timeout}
