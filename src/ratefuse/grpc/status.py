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

from ratefuse.core.errors import CircuitOpenError

RETRY_PUSHBACK = "grpc-retry-pushback-ms"
STATUS_DETAILS = "grpc-status-details-bin"
# A negative pushback tells a gRPC client not to retry at all: the answer
# for a cost that can never be admitted.
NO_RETRY = "-1"

Metadata = tuple[tuple[str, str | bytes], ...]
# Read once: an enum member looked up per rejected call costs as much as
# the rejection itself.
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


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


class LocalRpcError(grpc.RpcError):  # type: ignore[misc]
    """`LocalRpcError` is a call failed by a client interceptor before it
    reached the network: a ``grpc.RpcError`` with the accessors of a
    failed call (``code()``, ``details()``, ``trailing_metadata()``,
    ``initial_metadata()``, ``debug_error_string()``) for sync and asyncio
    callers alike; ``cause`` is the ratefuse error behind it, whose text is
    the details. Cheap to make (the text is rendered when asked for): an
    open breaker raises one per call it rejects."""

    def __init__(
        self,
        code: grpc.StatusCode,
        cause: BaseException,
        trailing_metadata: Metadata = (),
    ) -> None:
        super().__init__()
        self._code = code
        self._trailing_metadata = trailing_metadata
        self.cause = cause

    def code(self) -> grpc.StatusCode:
        """`code` is the call's status code."""
        return self._code

    def details(self) -> str:
        """`details` is the status message: the cause's text."""
        return str(self.cause)

    def initial_metadata(self) -> Metadata:
        """`initial_metadata` is empty: nothing was received."""
        return ()

    def trailing_metadata(self) -> Metadata:
        """`trailing_metadata` is what a server would have sent with this
        status (the retry delay of a local RESOURCE_EXHAUSTED)."""
        return self._trailing_metadata

    def debug_error_string(self) -> str:
        """`debug_error_string` names the status and the message."""
        return f"{self._code.name}: {self.details()} (raised locally by ratefuse)"

    def __str__(self) -> str:
        return f"{type(self).__name__}({self._code.name}: {self.details()})"


class CircuitOpenRpcError(LocalRpcError):
    """`CircuitOpenRpcError` is UNAVAILABLE from an open breaker; ``cause``
    is the :class:`ratefuse.errors.CircuitOpenError`."""

    def __init__(self, cause: CircuitOpenError) -> None:
        super().__init__(UNAVAILABLE, cause)


class RateLimitedRpcError(LocalRpcError):
    """`RateLimitedRpcError` is RESOURCE_EXHAUSTED from the client's own
    outbound limiter (no capacity within the call's deadline); ``cause`` is
    the :class:`ratefuse.errors.RateLimitExceeded`."""

    def __init__(self, cause: Any, retry_after: float) -> None:
        metadata = denial_metadata(str(cause), retry_after)
        super().__init__(RESOURCE_EXHAUSTED, cause, metadata)
