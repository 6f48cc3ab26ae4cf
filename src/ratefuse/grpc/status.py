"""How ratefuse says no over gRPC: RESOURCE_EXHAUSTED with the retry delay
where gRPC's retry policy reads it (trailing metadata
``grpc-retry-pushback-ms``) and as a ``google.rpc.RetryInfo`` in the rich
error details (``grpc-status-details-bin``, when grpcio-status is
installed), and the errors a client interceptor raises locally.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
from grpc.aio import AioRpcError

from ratefuse.core.errors import CircuitOpenError

RETRY_PUSHBACK = "grpc-retry-pushback-ms"
STATUS_DETAILS = "grpc-status-details-bin"
# A negative pushback tells a gRPC client not to retry at all: the answer
# for a cost that can never be admitted.
NO_RETRY = "-1"

Metadata = tuple[tuple[str, str | bytes], ...]


def pushback_ms(retry_after: float) -> str:
    """`pushback_ms` is ``retry_after`` seconds as the pushback value: whole
    milliseconds rounded up, ``-1`` (do not retry) for ``inf``."""
    if retry_after != retry_after or retry_after == math.inf:
        return NO_RETRY
    return str(max(0, math.ceil(retry_after * 1000)))


def _rich_details(code: grpc.StatusCode, message: str, retry_after: float) -> bytes:
    # The google.rpc.Status of the denial, with a RetryInfo when it can be
    # retried; grpcio-status's protos (googleapis-common-protos) build it.
    from google.protobuf import any_pb2, duration_pb2
    from google.rpc import error_details_pb2, status_pb2

    status = status_pb2.Status(code=code.value[0], message=message)
    if retry_after < math.inf:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(max(0, math.ceil(retry_after * 1e9)))
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        status.details.append(detail)
    serialized: bytes = status.SerializeToString()
    return serialized


def _has_rich_status() -> bool:
    try:
        import grpc_status  # noqa: F401
        from google.rpc import error_details_pb2  # noqa: F401
    except ImportError:
        return False
    return True


RICH_STATUS = _has_rich_status()


def denial_metadata(message: str, retry_after: float | None) -> Metadata:
    """`denial_metadata` is the trailing metadata of a RESOURCE_EXHAUSTED
    answer: the pushback when ``retry_after`` is known (None: a full
    bulkhead, which cannot say when a slot frees), and the rich status."""
    metadata: list[tuple[str, str | bytes]] = []
    if retry_after is not None:
        metadata.append((RETRY_PUSHBACK, pushback_ms(retry_after)))
    if RICH_STATUS:
        code = grpc.StatusCode.RESOURCE_EXHAUSTED
        rich = _rich_details(
            code, message, math.inf if retry_after is None else retry_after
        )
        metadata.append((STATUS_DETAILS, rich))
    return tuple(metadata)


class LocalRpcError(AioRpcError):  # type: ignore[misc]
    """`LocalRpcError` is a call failed by a client interceptor before it
    reached the network: a ``grpc.RpcError`` (with ``code()``,
    ``details()``, ``trailing_metadata()``) for sync and asyncio callers
    alike; ``cause`` is the ratefuse error behind it."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        cause: BaseException,
        trailing_metadata: Metadata = (),
    ) -> None:
        super().__init__(
            code,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(*trailing_metadata),
            details=details,
        )
        self.cause = cause


class CircuitOpenRpcError(LocalRpcError):
    """`CircuitOpenRpcError` is UNAVAILABLE from an open breaker; ``cause``
    is the :class:`ratefuse.errors.CircuitOpenError`."""

    def __init__(self, cause: CircuitOpenError) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, str(cause), cause)


class RateLimitedRpcError(LocalRpcError):
    """`RateLimitedRpcError` is RESOURCE_EXHAUSTED from the client's own
    outbound limiter (no capacity within the call's deadline); ``cause`` is
    the :class:`ratefuse.errors.RateLimitExceeded`."""

    def __init__(self, cause: Any, retry_after: float) -> None:
        message = str(cause)
        super().__init__(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            message,
            cause,
            denial_metadata(message, retry_after),
        )
