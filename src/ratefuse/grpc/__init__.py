"""gRPC: rate limits, bulkheads and breakers as grpcio interceptors, and
the standard health service fed from a registry (the ``grpc`` extra:
grpcio, grpcio-status, grpcio-health-checking).

Server side, :class:`ServerInterceptor` (sync ``grpc.Server``) and
:class:`AsyncServerInterceptor` (``grpc.aio``) enforce :class:`MethodRule`
limits and bulkheads per method; client side, :class:`ClientInterceptor`
and :class:`AsyncClientInterceptor` put a breaker and an outbound limiter
in front of a channel; :class:`GuardedAioChannel` does it for a grpc.aio
channel without grpc.aio's interceptor machinery (cheaper per call).
"""

from __future__ import annotations

from ratefuse.grpc.channel_aio import GuardedAioChannel
from ratefuse.grpc.client import ClientInterceptor
from ratefuse.grpc.client_aio import AsyncClientInterceptor
from ratefuse.grpc.guard import DEFAULT_FAILURE_CODES
from ratefuse.grpc.keys import METHOD, PEER, CallKey, metadata, peer_address
from ratefuse.grpc.rules import MethodRule
from ratefuse.grpc.server import ServerInterceptor
from ratefuse.grpc.server_aio import AsyncServerInterceptor
from ratefuse.grpc.status import (
    RETRY_PUSHBACK,
    CircuitOpenRpcError,
    LocalRpcError,
    RateLimitedRpcError,
)
from ratefuse.web.rules import Limit

__all__ = [
    "DEFAULT_FAILURE_CODES",
    "METHOD",
    "PEER",
    "RETRY_PUSHBACK",
    "AsyncClientInterceptor",
    "AsyncServerInterceptor",
    "CallKey",
    "CircuitOpenRpcError",
    "ClientInterceptor",
    "GuardedAioChannel",
    "Limit",
    "LocalRpcError",
    "MethodRule",
    "RateLimitedRpcError",
    "ServerInterceptor",
    "metadata",
    "peer_address",
]
