"""`ClientInterceptor`: a circuit breaker and an outbound limiter in front
of a sync gRPC channel.

    channel = grpc.intercept_channel(
        grpc.insecure_channel("inventory:50051"),
        ClientInterceptor(CircuitBreaker("inventory"), limiter=Limiter("100/s")),
    )

An open breaker fails a call at once, without touching the network, with
UNAVAILABLE (:class:`ratefuse.grpc.CircuitOpenRpcError`, a
``grpc.RpcError``) or, with ``raise_circuit_open``, the
:class:`ratefuse.errors.CircuitOpenError`. A call's status decides its
outcome for the breaker (`ratefuse.grpc.guard.Guard.record`).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import grpc

from ratefuse.core.errors import CircuitOpenError
from ratefuse.engine.breaker_forms import Breaker, start
from ratefuse.grpc.guard import Guard, Guarded


class ClientInterceptor(
    Guarded,
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """`ClientInterceptor` guards every call of a channel
    (``grpc.intercept_channel(channel, interceptor)``).

    ``breaker``: one breaker for the channel's target (a sync
    :class:`ratefuse.engine.breaker_forms.Breaker`: CircuitBreaker or
    FleetBreaker); or ``breaker_per_method``, a function of the full method
    name that makes each method's breaker (called once per method). None
    of both: no breaker. ``failure_codes`` are the statuses that count as
    failures (default: UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, UNKNOWN,
    RESOURCE_EXHAUSTED); slow calls count by the breaker's own rules.
    ``limiter`` (a sync limiter of one quota; None: none) takes a unit per
    call, waiting at most ``max_wait`` seconds (default: no bound of its
    own) and never past the call's timeout, else the call fails locally
    with RESOURCE_EXHAUSTED (:class:`ratefuse.grpc.RateLimitedRpcError`).
    ``registry`` and ``client`` instead take the breaker, limiter and
    failure codes of ``[grpc.clients.<client>]`` in the registry's config,
    again after each reload. Thread-safe.
    """

    def _call(self, continuation: Any, details: Any, request: Any) -> Any:
        guard = self.guard
        breaker = guard.breaker_for(details.method)
        if breaker is None:
            if guard.limiter is not None:
                details = guard.admit(details)
            return continuation(details, request)
        permit = breaker.permit_or_error()
        if isinstance(permit, CircuitOpenError):
            raise guard.rejected(permit)
        if inspect.isawaitable(permit):
            raise TypeError(f"{breaker!r} is asyncio: use AsyncClientInterceptor")
        try:
            if guard.limiter is not None:
                details = guard.admit(details)
            start_ns = start(breaker, permit)
            call = continuation(details, request)
        except BaseException:
            permit.release()
            raise
        call.add_done_callback(
            functools.partial(_done, guard, breaker, permit, start_ns)
        )
        return call

    def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """`intercept_unary_unary` guards a unary call."""
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        """`intercept_unary_stream` guards a response-streaming call; its
        outcome is recorded when the stream ends."""
        return self._call(continuation, client_call_details, request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        """`intercept_stream_unary` guards a request-streaming call."""
        return self._call(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        """`intercept_stream_stream` guards a bidirectional call."""
        return self._call(continuation, client_call_details, request_iterator)


def _done(
    guard: Guard, breaker: Breaker, permit: Any, start_ns: int, call: Any
) -> None:
    # gRPC's done callback: the call has its status.
    guard.record(breaker, permit, start_ns, call.code(), call.details())
