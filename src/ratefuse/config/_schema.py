"""The configuration schema: a plain mapping (from a dict or TOML) checked
whole and lowered to frozen entries, or rejected with every error named by
its path (``limiters.api.rate: ...``).

Nothing here builds a limiter or opens a connection: a config that parses
is one the registry can apply without failing half-way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any, Final, TypeVar

from ratefuse.config._bounds import (
    MAX_ENTRIES,
    MAX_RATES,
    breaker_slots,
    check_slots,
    limiter_slots,
)
from ratefuse.config._grpc_schema import EMPTY_GRPC, GrpcConfig, parse_grpc
from ratefuse.core.backend_defaults import (
    DEFAULT_ON_BACKEND_ERROR,
    DEFAULT_TIMEOUT,
    POLICIES,
)
from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.core.keys import DEFAULT_MAX_KEYS, check_max_keys
from ratefuse.core.spec import LimitSpec
from ratefuse.engine.waiting import wait_bound_ns
from ratefuse.rates import (
    DEFAULT_ALGORITHM,
    Rate,
    build_specs,
    canonical_algorithm,
    to_rates,
)

Result = TypeVar("Result")

ENTRY_SECTIONS: Final = ("backends", "limiters", "breakers")
# `removed` names entries a new config drops on purpose (see Registry.update).
SECTIONS: Final = (*ENTRY_SECTIONS, "removed", "grpc")
LIMITER_FIELDS: Final = (
    "rate",
    "algorithm",
    "keyed",
    "max_keys",
    "max_wait",
    "backend",
    "on_backend_error",
)
BACKEND_FIELDS: Final = ("url", "cluster", "timeout")
BACKEND_SCHEMES: Final = ("redis://", "rediss://", "unix://")
# A backend's timeout above a day is a mistake, not a deadline.
MAX_BACKEND_TIMEOUT: Final = 86_400.0
# BreakerConfig fields a config file can hold: numbers and strings, not the
# exception classes and predicates (give those in Registry's
# breaker_defaults).
BREAKER_FIELDS: Final = tuple(
    field.name
    for field in dataclasses.fields(BreakerConfig)
    if field.name
    not in (
        "record_exceptions",
        "ignore_exceptions",
        "exception_predicate",
        "result_predicate",
    )
)


class ConfigError(ValueError):
    """`ConfigError` rejects a whole configuration; ``errors`` holds one
    message per problem, each starting with its path."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = tuple(errors)
        super().__init__("invalid ratefuse config: " + "; ".join(self.errors))


class StaleVersionError(ConfigError):
    """`StaleVersionError` refuses a configuration whose ``version`` is not
    above the ``in_force`` one (see Registry.update)."""

    def __init__(self, version: int, in_force: int) -> None:
        self.version = version
        self.in_force = in_force
        super().__init__(
            [f"version: {version} is not newer than the {in_force} in force"]
        )


@dataclass(frozen=True)
class BackendEntry:
    """`BackendEntry` is a Redis server (``url``) or cluster (``cluster``
    true, ``url`` one of its nodes); ``timeout`` seconds bounds each
    connect, send and read (default 0.1)."""

    url: str
    cluster: bool = False
    timeout: float = DEFAULT_TIMEOUT


@dataclass(frozen=True)
class LimiterEntry:
    """`LimiterEntry` is one limiter: a Limiter, a KeyedLimiter (``keyed``)
    or, with a ``backend``, a RedisLimiter (always keyed)."""

    rates: tuple[Rate, ...]
    algorithm: str
    specs: tuple[LimitSpec, ...]
    keyed: bool = False
    max_keys: int = DEFAULT_MAX_KEYS
    max_wait: float | None = None
    backend: str | None = None
    on_backend_error: str = DEFAULT_ON_BACKEND_ERROR

    @property
    def shape(self) -> tuple[object, ...]:
        """`shape` is what a running limiter cannot change in place: two
        entries of one shape differ only in limits and algorithm."""
        if self.backend is not None:
            return ("redis", self.backend, self.on_backend_error, self.specs)
        if self.keyed:
            return ("keyed", self.max_keys, self.max_wait)
        return ("limiter", self.max_wait)


NOTHING_REMOVED: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {section: frozenset() for section in ENTRY_SECTIONS}
)


@dataclass(frozen=True)
class Config:
    """`Config` is a checked configuration: read-only mappings by name, and
    ``removed``, the names per section (backends, limiters, breakers) that
    it drops on purpose (its ``[removed]`` table)."""

    backends: Mapping[str, BackendEntry]
    limiters: Mapping[str, LimiterEntry]
    breakers: Mapping[str, BreakerConfig]
    removed: Mapping[str, frozenset[str]] = dataclasses.field(
        default_factory=lambda: NOTHING_REMOVED
    )
    grpc: GrpcConfig = EMPTY_GRPC

    def names(self, section: str) -> frozenset[str]:
        """`names` is the set of entry names of ``section``."""
        entries: Mapping[str, object] = getattr(self, section)
        return frozenset(entries)


def parse_config(
    raw: Mapping[str, Any], breaker_defaults: BreakerConfig | None = None
) -> Config:
    """`parse_config` checks ``raw`` whole and returns its :class:`Config`;
    raises :class:`ConfigError` listing every problem by path. Breakers
    start from ``breaker_defaults`` (None: BreakerConfig())."""
    errors: list[str] = []
    if not isinstance(raw, Mapping):
        raise ConfigError([f"config: must be a table, got {type(raw).__name__}"])
    for section in raw:
        if section not in SECTIONS:
            errors.append(
                f"{section}: unknown section (expected {', '.join(SECTIONS)})"
            )
    backends = {
        name: entry
        for name, table in _tables(raw, "backends", errors)
        if (entry := _backend(f"backends.{name}", table, errors)) is not None
    }
    limiters = {
        name: limiter
        for name, table in _tables(raw, "limiters", errors)
        if (limiter := _limiter(f"limiters.{name}", table, raw, errors)) is not None
    }
    base = BreakerConfig() if breaker_defaults is None else breaker_defaults
    breakers = {
        name: rules
        for name, table in _tables(raw, "breakers", errors)
        if (rules := _breaker(f"breakers.{name}", table, base, errors)) is not None
    }
    removed = _removed(raw, errors)
    grpc = parse_grpc(raw, errors)
    if errors:
        raise ConfigError(errors)
    config = Config(
        MappingProxyType(backends),
        MappingProxyType(limiters),
        MappingProxyType(breakers),
        MappingProxyType(removed),
        grpc,
    )
    for section in ENTRY_SECTIONS:
        for name in sorted(removed[section] & config.names(section)):
            errors.append(f"removed.{section}: {name!r} is both configured and removed")
    slots = {
        f"breakers.{name}": breaker_slots(rules) for name, rules in breakers.items()
    }
    slots.update(
        (f"limiters.{name}", limiter_slots(entry.specs))
        for name, entry in limiters.items()
    )
    check_slots(slots, errors)
    if errors:
        raise ConfigError(errors)
    return config


def _removed(raw: Mapping[str, Any], errors: list[str]) -> dict[str, frozenset[str]]:
    # The [removed] table: per section, a list of the names dropped on purpose.
    table = raw.get("removed", {})
    removed = {section: frozenset[str]() for section in ENTRY_SECTIONS}
    if not isinstance(table, Mapping):
        errors.append(f"removed: must be a table, got {type(table).__name__}")
        return removed
    _unknown("removed", table, ENTRY_SECTIONS, errors)
    for section in ENTRY_SECTIONS:
        names = table.get(section, [])
        if not isinstance(names, list) or not all(
            isinstance(name, str) and name for name in names
        ):
            errors.append(
                f"removed.{section}: must be a list of names, got {names!r}"[:200]
            )
        elif len(names) > MAX_ENTRIES:
            errors.append(
                f"removed.{section}: {len(names)} names, at most {MAX_ENTRIES}"
            )
        else:
            removed[section] = frozenset(names)
    return removed


def _tables(
    raw: Mapping[str, Any], section: str, errors: list[str]
) -> list[tuple[str, Mapping[str, Any]]]:
    # The named tables of one section, each checked to be a table.
    tables = raw.get(section, {})
    if not isinstance(tables, Mapping):
        errors.append(f"{section}: must be a table, got {type(tables).__name__}")
        return []
    if len(tables) > MAX_ENTRIES:
        errors.append(f"{section}: {len(tables)} entries, at most {MAX_ENTRIES}")
        return []
    found = []
    for name, table in tables.items():
        if not isinstance(name, str) or not name:
            errors.append(f"{section}: names must be non-empty strings, got {name!r}")
        elif not isinstance(table, Mapping):
            errors.append(
                f"{section}.{name}: must be a table, got {type(table).__name__}"
            )
        else:
            found.append((name, table))
    return found


def _unknown(
    path: str, table: Mapping[str, Any], known: tuple[str, ...], errors: list[str]
) -> None:
    for field in table:
        if field not in known:
            errors.append(
                f"{path}.{field}: unknown field (expected {', '.join(known)})"
            )


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _backend(
    path: str, table: Mapping[str, Any], errors: list[str]
) -> BackendEntry | None:
    before = len(errors)
    _unknown(path, table, BACKEND_FIELDS, errors)
    url = table.get("url")
    if not isinstance(url, str) or not url.startswith(BACKEND_SCHEMES):
        errors.append(
            f"{path}.url: must be a string starting with "
            f"{', '.join(BACKEND_SCHEMES)}, got {url!r}"
        )
    cluster = table.get("cluster", False)
    if not isinstance(cluster, bool):
        errors.append(f"{path}.cluster: must be true or false, got {cluster!r}")
    timeout = table.get("timeout", DEFAULT_TIMEOUT)
    if not _is_number(timeout) or not 0 < timeout <= MAX_BACKEND_TIMEOUT:
        errors.append(
            f"{path}.timeout: must be seconds in (0, {MAX_BACKEND_TIMEOUT:g}], "
            f"got {timeout!r}"
        )
    if len(errors) > before or not isinstance(url, str):
        return None
    return BackendEntry(url, cluster, float(timeout))


def _limiter(
    path: str, table: Mapping[str, Any], raw: Mapping[str, Any], errors: list[str]
) -> LimiterEntry | None:
    before = len(errors)
    _unknown(path, table, LIMITER_FIELDS, errors)
    rates, algorithm, specs = _limits(path, table, errors)
    keyed = table.get("keyed", False)
    if not isinstance(keyed, bool):
        errors.append(f"{path}.keyed: must be true or false, got {keyed!r}")
    backend = table.get("backend")
    if backend is not None:
        known = raw.get("backends")
        if (
            not isinstance(backend, str)
            or not isinstance(known, Mapping)
            or (backend not in known)
        ):
            errors.append(f"{path}.backend: no backend named {backend!r} in backends")
        if keyed is False and "keyed" in table:
            errors.append(f"{path}.keyed: a limiter with a backend is always keyed")
    max_keys = table.get("max_keys", DEFAULT_MAX_KEYS)
    if "max_keys" in table and not (keyed is True and backend is None):
        errors.append(f"{path}.max_keys: only an in-memory keyed limiter has max_keys")
    else:
        _check(f"{path}.max_keys", check_max_keys, max_keys, errors)
    max_wait = table.get("max_wait")
    if backend is not None and max_wait is not None:
        errors.append(f"{path}.max_wait: a limiter with a backend does not wait")
    else:
        _check(
            f"{path}.max_wait",
            lambda value: wait_bound_ns(None, value),
            max_wait,
            errors,
        )
    policy = table.get("on_backend_error", DEFAULT_ON_BACKEND_ERROR)
    if "on_backend_error" in table and backend is None:
        errors.append(f"{path}.on_backend_error: only a limiter with a backend has one")
    elif policy not in POLICIES:
        errors.append(
            f"{path}.on_backend_error: must be one of "
            f"{', '.join(POLICIES)}, got {policy!r}"
        )
    if len(errors) > before:
        return None
    return LimiterEntry(
        rates,
        algorithm,
        specs,
        keyed or backend is not None,
        max_keys,
        max_wait,
        backend,
        policy,
    )


def _limits(
    path: str, table: Mapping[str, Any], errors: list[str]
) -> tuple[tuple[Rate, ...], str, tuple[LimitSpec, ...]]:
    # The rates, canonical algorithm and specs; ((), "", ()) after an error.
    rate = table.get("rate")
    rates: tuple[Rate, ...] = ()
    algorithm = ""
    if rate is None:
        errors.append(f'{path}.rate: missing (a rate such as "10/s; 1000/h")')
    elif not isinstance(rate, str) and not (
        isinstance(rate, list) and all(isinstance(item, str) for item in rate)
    ):
        errors.append(
            f"{path}.rate: must be a string or a list of strings, got {rate!r}"
        )
    elif isinstance(rate, list) and len(rate) > MAX_RATES:
        errors.append(f"{path}.rate: {len(rate)} rates, at most {MAX_RATES}")
    else:
        rates = _check(f"{path}.rate", to_rates, rate, errors) or ()
        if len(rates) > MAX_RATES:
            errors.append(f"{path}.rate: {len(rates)} rates, at most {MAX_RATES}")
            rates = ()
    name = table.get("algorithm", DEFAULT_ALGORITHM)
    if not isinstance(name, str):
        errors.append(f"{path}.algorithm: must be a string, got {name!r}")
    else:
        algorithm = _check(f"{path}.algorithm", canonical_algorithm, name, errors) or ""
    if not rates or not algorithm:
        return (), "", ()
    specs = _check(
        f"{path}.rate", lambda value: build_specs(value, algorithm), rates, errors
    )
    return rates, algorithm, specs or ()


def _breaker(
    path: str, table: Mapping[str, Any], base: BreakerConfig, errors: list[str]
) -> BreakerConfig | None:
    before = len(errors)
    _unknown(path, table, BREAKER_FIELDS, errors)
    known = {field: value for field, value in table.items() if field in BREAKER_FIELDS}
    for field, value in known.items():  # each field alone, to name it
        _check(f"{path}.{field}", partial(_replace_one, base, field), value, errors)
    if len(errors) > before:
        return None
    # Together: a combination may be invalid where each field alone is not.
    return _check(
        path, lambda fields: dataclasses.replace(base, **fields), known, errors
    )


def _replace_one(base: BreakerConfig, field: str, value: Any) -> BreakerConfig:
    changes: dict[str, Any] = {field: value}
    return dataclasses.replace(base, **changes)


def _check(
    path: str, build: Callable[[Any], Result], value: Any, errors: list[str]
) -> Result | None:
    # build(value), or None with the error recorded under `path`; an int too
    # large for a float (OverflowError) is a bad value like any other.
    try:
        return build(value)
    except (ValueError, TypeError, ArithmeticError) as exc:
        errors.append(f"{path}: {exc}")
        return None
