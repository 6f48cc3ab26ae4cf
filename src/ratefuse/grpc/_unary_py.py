"""The common unary call of a `ratefuse.grpc.GuardedAioChannel`, reference
twin (``ext/ratefuse/grpc/_unary_c.pyx`` is the compiled one; both are
picked through ``ratefuse.core.implementation``).

`unary_multicallable` gives a method with one response a
`UnaryMultiCallable` when its breaker is a local one of this core that
nothing can swap (no registry, no breaker per method) and there is no
outbound limiter: a CLOSED breaker's permit is then taken and the real call
started with no other step, in a `GuardedUnaryCall` that records the
outcome where it is awaited. Every other call (the breaker times calls,
or it refuses) takes the channel's general path.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import grpc

from ratefuse.core.errors import CircuitOpenError
from ratefuse.engine._breaker_py import BreakerCore
from ratefuse.engine.breaker_forms import UNTIMED, Breaker
from ratefuse.grpc.call_aio import RefusedCall
from ratefuse.grpc.guard import Guard

OK = grpc.StatusCode.OK


class GuardedUnaryCall:
    """`GuardedUnaryCall` is a real grpc.aio call with one response (its
    methods are the call's) under a breaker's ``permit``: awaiting it
    records the outcome, by the status (`ratefuse.grpc.guard.Guard.record`)
    or, cancelled, as none. A call dropped without being awaited gives its
    permit back with no outcome."""

    __slots__ = ("_breaker", "_call", "_guard", "_permit", "_start_ns")

    def __init__(
        self, call: Any, guard: Guard, breaker: Breaker, permit: Any, start_ns: int
    ) -> None:
        self._call = call
        self._guard = guard
        self._breaker = breaker
        self._permit = permit
        self._start_ns = start_ns

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    def __await__(self) -> Generator[Any, None, Any]:
        try:
            response = yield from self._call.__await__()
        except grpc.aio.AioRpcError as error:
            self._record(error.code(), error.details())
            raise
        except BaseException:
            self._release()  # cancelled: no outcome
            raise
        self._record(OK, None)
        return response

    def _record(self, code: grpc.StatusCode, details: str | None) -> None:
        permit, self._permit = self._permit, None
        if permit is None:  # awaited before
            return
        if code is OK and self._start_ns == UNTIMED:
            permit.on_success(0.0)
        else:
            self._guard.record(self._breaker, permit, self._start_ns, code, details)

    def _release(self) -> None:
        permit, self._permit = self._permit, None
        if permit is not None:
            permit.release()

    def __del__(self) -> None:
        self._release()  # never awaited: no outcome


class UnaryMultiCallable:
    """`UnaryMultiCallable` is the multicallable of a method with one
    response guarded by ``breaker`` alone (see module): ``general`` (the
    channel's `ratefuse.grpc.channel_aio.GuardedMultiCallable`) takes the
    calls a timed breaker guards."""

    __slots__ = ("_breaker", "_general", "_guard", "_real")

    def __init__(self, general: Any, real: Any, guard: Guard, breaker: Any) -> None:
        self._general = general
        self._real = real
        self._guard = guard
        self._breaker = breaker

    def __call__(self, *request: Any, **options: Any) -> Any:
        breaker = self._breaker
        if breaker.timed:
            return self._general(*request, **options)
        # The real call starts now (grpc.aio sends it at once), so this is
        # as late as the permit can be taken.
        permit = breaker.permit_or_error()
        if isinstance(permit, CircuitOpenError):
            return RefusedCall(self._guard.rejected(permit))
        try:
            call = self._real(*request, **options)
        except BaseException:
            permit.release()
            raise
        return GuardedUnaryCall(call, self._guard, breaker, permit, UNTIMED)


def unary_multicallable(general: Any, real: Any, guard: Guard) -> Any:
    """`unary_multicallable` is the multicallable of a method with one
    response: a `UnaryMultiCallable` where the module says, else
    ``general``."""
    breaker = guard.breaker
    if (
        guard.breaker_is_fixed
        and guard.limiter is None
        and isinstance(breaker, BreakerCore)
    ):
        return UnaryMultiCallable(general, real, guard, breaker)
    return general
