"""The ``[grpc]`` section of a configuration: method limits and bulkheads
for the server interceptors, breakers and outbound limiters for named
clients. Checked whole with the rest of the config (every error named by
its path); nothing here imports grpcio.

    [[grpc.methods]]                 # first match wins, in this order
    pattern = "/shop.Orders/*"
    limits = [{ limiter = "per_token", key = "metadata:x-api-key" }]
    bulkhead = 10                    # concurrent calls per method
    max_wait = 0.0                   # seconds a denied call may wait
    per_message = false              # request streams: admit each message

    [grpc.clients.inventory]
    breaker = "inventory"            # a name in [breakers]
    limiter = "outbound"             # a name in [limiters] (one quota)
    failure_codes = ["UNAVAILABLE", "DEADLINE_EXCEEDED"]
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from ratefuse.config._bounds import MAX_ENTRIES

METHOD_FIELDS: Final = ("pattern", "limits", "bulkhead", "max_wait", "per_message")
LIMIT_FIELDS: Final = ("limiter", "key", "cost", "name")
CLIENT_FIELDS: Final = ("breaker", "limiter", "failure_codes")
# The keys a config can name: the peer's address, the method, or a
# metadata entry ("metadata:x-api-key").
KEY_KINDS: Final = ("peer", "method", "metadata:<name>")
DEFAULT_KEY: Final = "peer"
# gRPC's status codes by name (grpc.StatusCode), without importing grpcio.
STATUS_CODES: Final = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)
DEFAULT_FAILURE_CODES: Final = (
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
    "INTERNAL",
    "UNKNOWN",
    "RESOURCE_EXHAUSTED",
)
_PATTERN = re.compile(r"/[^/]+/[^/]+")
_METADATA_NAME = re.compile(r"[0-9a-z_.-]+")


@dataclass(frozen=True)
class GrpcLimitEntry:
    """`GrpcLimitEntry` is one limit of a method: the ``limiter``'s name in
    ``[limiters]``, its ``key`` (``peer``, ``method`` or
    ``metadata:<name>``), ``cost`` and ``name`` (in denial messages)."""

    limiter: str
    key: str = DEFAULT_KEY
    cost: int = 1
    name: str = "default"


@dataclass(frozen=True)
class GrpcMethodEntry:
    """`GrpcMethodEntry` is a server rule (see ratefuse.grpc.MethodRule)."""

    pattern: str
    limits: tuple[GrpcLimitEntry, ...] = ()
    bulkhead: int | None = None
    max_wait: float = 0.0
    per_message: bool = False


@dataclass(frozen=True)
class GrpcClientEntry:
    """`GrpcClientEntry` is a named client's guard: a ``breaker`` and an
    outbound ``limiter`` (names; None: none), and the status codes that
    count as the breaker's failures."""

    breaker: str | None = None
    limiter: str | None = None
    failure_codes: tuple[str, ...] = DEFAULT_FAILURE_CODES


@dataclass(frozen=True)
class GrpcConfig:
    """`GrpcConfig` is the ``[grpc]`` section: ``methods`` in order (first
    match wins) and ``clients`` by name."""

    methods: tuple[GrpcMethodEntry, ...] = ()
    clients: Mapping[str, GrpcClientEntry] = field(
        default_factory=lambda: MappingProxyType({})
    )


EMPTY_GRPC: Final = GrpcConfig()


def parse_grpc(raw: Mapping[str, Any], errors: list[str]) -> GrpcConfig:
    """`parse_grpc` checks the ``grpc`` table of the config ``raw`` (its
    names resolved against ``raw``'s limiters and breakers) and returns
    it lowered; problems are appended to ``errors`` by path."""
    table = raw.get("grpc", {})
    if not isinstance(table, Mapping):
        errors.append(f"grpc: must be a table, got {type(table).__name__}")
        return EMPTY_GRPC
    _unknown("grpc", table, ("methods", "clients"), errors)
    methods_raw = table.get("methods", [])
    methods = []
    if not isinstance(methods_raw, list) or len(methods_raw) > MAX_ENTRIES:
        errors.append(f"grpc.methods: must be a list of at most {MAX_ENTRIES} tables")
    else:
        for index, method in enumerate(methods_raw):
            entry = _method(f"grpc.methods[{index}]", method, raw, errors)
            if entry is not None:
                methods.append(entry)
    clients_raw = table.get("clients", {})
    clients = {}
    if not isinstance(clients_raw, Mapping) or len(clients_raw) > MAX_ENTRIES:
        errors.append(f"grpc.clients: must be a table of at most {MAX_ENTRIES} entries")
    else:
        for name, client in clients_raw.items():
            guard = _client(f"grpc.clients.{name}", client, raw, errors)
            if guard is not None:
                clients[name] = guard
    return GrpcConfig(tuple(methods), MappingProxyType(clients))


def _unknown(
    path: str, table: Mapping[str, Any], known: tuple[str, ...], errors: list[str]
) -> None:
    for name in table:
        if name not in known:
            errors.append(f"{path}.{name}: unknown field (expected {', '.join(known)})")


def _named(
    path: str, value: object, section: str, raw: Mapping[str, Any], errors: list[str]
) -> bool:
    # Whether ``value`` names an entry of ``section`` in the same config.
    entries = raw.get(section)
    if not isinstance(value, str) or not isinstance(entries, Mapping):
        errors.append(f"{path}: no {section[:-1]} named {value!r} in {section}")
        return False
    if value not in entries:
        errors.append(f"{path}: no {section[:-1]} named {value!r} in {section}")
        return False
    return True


def _method(
    path: str, table: object, raw: Mapping[str, Any], errors: list[str]
) -> GrpcMethodEntry | None:
    if not isinstance(table, Mapping):
        errors.append(f"{path}: must be a table, got {type(table).__name__}")
        return None
    before = len(errors)
    _unknown(path, table, METHOD_FIELDS, errors)
    pattern = table.get("pattern")
    if not isinstance(pattern, str) or not _PATTERN.fullmatch(pattern):
        errors.append(
            f"{path}.pattern: must be a full method name /package.Service/Method "
            f"(with * wildcards), got {pattern!r}"
        )
    limits_raw = table.get("limits", [])
    limits = []
    if not isinstance(limits_raw, list):
        errors.append(f"{path}.limits: must be a list of tables, got {limits_raw!r}")
    else:
        for index, limit in enumerate(limits_raw):
            entry = _limit(f"{path}.limits[{index}]", limit, raw, errors)
            if entry is not None:
                limits.append(entry)
        names = [limit.name for limit in limits]
        if len(set(names)) != len(names):
            errors.append(f"{path}.limits: names must be unique, got {names!r}")
    bulkhead = table.get("bulkhead")
    if bulkhead is not None and (
        isinstance(bulkhead, bool) or not isinstance(bulkhead, int) or bulkhead < 1
    ):
        errors.append(f"{path}.bulkhead: must be an int >= 1, got {bulkhead!r}")
    max_wait = table.get("max_wait", 0.0)
    if (
        isinstance(max_wait, bool)
        or not isinstance(max_wait, (int, float))
        or not 0 <= max_wait < math.inf
    ):
        errors.append(f"{path}.max_wait: must be seconds >= 0, got {max_wait!r}")
    per_message = table.get("per_message", False)
    if not isinstance(per_message, bool):
        errors.append(f"{path}.per_message: must be true or false, got {per_message!r}")
    if len(errors) > before:
        return None
    return GrpcMethodEntry(
        str(pattern), tuple(limits), bulkhead, float(max_wait), per_message
    )


def _limit(
    path: str, table: object, raw: Mapping[str, Any], errors: list[str]
) -> GrpcLimitEntry | None:
    if not isinstance(table, Mapping):
        errors.append(f"{path}: must be a table, got {type(table).__name__}")
        return None
    before = len(errors)
    _unknown(path, table, LIMIT_FIELDS, errors)
    limiter = table.get("limiter")
    if _named(f"{path}.limiter", limiter, "limiters", raw, errors):
        entry = raw["limiters"][limiter]
        keyed = isinstance(entry, Mapping) and (
            entry.get("keyed") is True or "backend" in entry
        )
        if "key" in table and not keyed:
            errors.append(f"{path}.key: limiter {limiter!r} is not keyed")
    key = table.get("key", DEFAULT_KEY)
    if not isinstance(key, str) or not (
        key in ("peer", "method")
        or (
            key.startswith("metadata:")
            and _METADATA_NAME.fullmatch(key[9:]) is not None
            and not key.endswith("-bin")
        )
    ):
        errors.append(
            f"{path}.key: must be one of {', '.join(KEY_KINDS)} "
            f"(a lower-case metadata name), got {key!r}"
        )
    cost = table.get("cost", 1)
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        errors.append(f"{path}.cost: must be an int >= 0, got {cost!r}")
    name = table.get("name", "default")
    if not isinstance(name, str) or not name.isprintable() or not name.isascii():
        errors.append(f"{path}.name: must be printable ASCII, got {name!r}")
    if len(errors) > before:
        return None
    return GrpcLimitEntry(limiter, key, cost, name)  # type: ignore[arg-type]


def _client(
    path: str, table: object, raw: Mapping[str, Any], errors: list[str]
) -> GrpcClientEntry | None:
    if not isinstance(table, Mapping):
        errors.append(f"{path}: must be a table, got {type(table).__name__}")
        return None
    before = len(errors)
    _unknown(path, table, CLIENT_FIELDS, errors)
    breaker = table.get("breaker")
    if breaker is not None:
        _named(f"{path}.breaker", breaker, "breakers", raw, errors)
    limiter = table.get("limiter")
    if limiter is not None and _named(
        f"{path}.limiter", limiter, "limiters", raw, errors
    ):
        entry = raw["limiters"][limiter]
        if isinstance(entry, Mapping) and (entry.get("keyed") or "backend" in entry):
            errors.append(
                f"{path}.limiter: {limiter!r} is keyed; a client needs one quota"
            )
    codes = table.get("failure_codes", list(DEFAULT_FAILURE_CODES))
    if not isinstance(codes, list) or not all(code in STATUS_CODES for code in codes):
        errors.append(
            f"{path}.failure_codes: must be a list of gRPC status code names "
            f"({', '.join(STATUS_CODES)}), got {codes!r}"[:300]
        )
    if len(errors) > before:
        return None
    return GrpcClientEntry(breaker, limiter, tuple(codes))
