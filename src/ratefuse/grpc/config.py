"""The ``[grpc]`` section of a registry's config, lowered to the objects
the interceptors take: :class:`MethodRule` lists for the servers, and the
breaker, limiter and failure codes of a named client."""

from __future__ import annotations

from typing import Any

import grpc

from ratefuse.config._grpc_schema import GrpcClientEntry, GrpcLimitEntry
from ratefuse.grpc.keys import METHOD, PEER, CallKey, metadata
from ratefuse.grpc.rules import MethodRule
from ratefuse.web.rules import Limit


def call_key(name: str) -> CallKey:
    """`call_key` is the CallKey a config names: ``peer``, ``method`` or
    ``metadata:<name>``."""
    if name == "peer":
        return PEER
    if name == "method":
        return METHOD
    return metadata(name.removeprefix("metadata:"))


def _limit(entry: GrpcLimitEntry) -> Limit:
    # The limiter stays a name: the interceptor resolves it in the registry.
    return Limit(
        entry.limiter, key=call_key(entry.key), cost=entry.cost, name=entry.name
    )


def server_rules(config: Any) -> list[MethodRule]:
    """`server_rules` are the method rules of ``config`` (a
    ratefuse.config Config), in order."""
    return [
        MethodRule(
            method.pattern,
            [_limit(limit) for limit in method.limits],
            bulkhead=method.bulkhead,
            max_wait=method.max_wait,
            per_message=method.per_message,
        )
        for method in config.grpc.methods
    ]


def client_entry(config: Any, name: str) -> GrpcClientEntry:
    """`client_entry` is the client ``name`` of ``config``'s
    ``[grpc.clients]``; raises KeyError naming it when absent."""
    try:
        entry: GrpcClientEntry = config.grpc.clients[name]
    except KeyError:
        raise KeyError(f"no gRPC client named {name!r} in [grpc.clients]") from None
    return entry


def status_codes(names: tuple[str, ...]) -> frozenset[Any]:
    """`status_codes` are the grpc.StatusCode members of ``names``."""
    return frozenset(getattr(grpc.StatusCode, name) for name in names)
