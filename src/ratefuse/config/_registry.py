"""`Registry`: the limiters and breakers of a configuration, by name, and
their changes at run time."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ratefuse.breaker import CircuitBreaker
from ratefuse.config._backends import Backend
from ratefuse.config._schema import Config, ConfigError, LimiterEntry, parse_config
from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.health import DEFAULT_HEALTH_TIMEOUT, Health, check_health
from ratefuse.keyed import KeyedLimiter
from ratefuse.limiter import Limiter

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

if TYPE_CHECKING:
    from typing import TypeAlias

    from ratefuse.redis import RedisLimiter

    AnyLimiter: TypeAlias = Limiter | KeyedLimiter | RedisLimiter
Clock = Callable[[], int]


class Registry:
    """`Registry` builds the limiters and breakers of a configuration and
    hands them out by name.

    ``config`` is a mapping with the sections ``backends``, ``limiters``
    and ``breakers`` (see README, "Configuration"); None is empty.
    ``clock`` (integer ns; None: monotonic) goes to every in-memory limiter
    and breaker. ``breaker_defaults`` is the BreakerConfig each breaker
    starts from (the place for exception classes and predicates, which a
    file cannot hold). Raises :class:`ConfigError` naming every bad path.

    `update` and `reload` change limits and thresholds at run time: objects
    handed out keep their identity and state, and each changes in one
    atomic step, so no decision is ever unlimited (see `update` for what a
    change of kind does). Thread-safe.
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        clock: Clock | None = None,
        breaker_defaults: BreakerConfig | None = None,
    ) -> None:
        if clock is not None and not callable(clock):
            raise TypeError(f"clock must be callable or None, got {clock!r}")
        self._clock = clock
        self._breaker_defaults = breaker_defaults
        self._path: str | None = None
        self._lock = threading.Lock()
        self._config = parse_config({} if config is None else config, breaker_defaults)
        self._backends: dict[str, Backend] = {}
        self._retired: list[Backend] = []
        self._limiters: dict[str, Any] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._apply(self._config, Config({}, {}, {}))

    @classmethod
    def from_toml(
        cls,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        breaker_defaults: BreakerConfig | None = None,
    ) -> Registry:
        """`from_toml` builds a registry from the TOML file at ``path``;
        `reload` re-reads it."""
        registry = cls(_read_toml(path), clock=clock, breaker_defaults=breaker_defaults)
        registry._path = os.fspath(path)
        return registry

    @property
    def config(self) -> Config:
        """`config` is the configuration in force."""
        return self._config

    def limiter(self, name: str) -> AnyLimiter:
        """`limiter` is the limiter ``name`` (the same object on every call
        until an `update` changes its kind); KeyError if there is none."""
        try:
            return self._limiters[name]  # type: ignore[no-any-return]
        except KeyError:
            raise KeyError(f"no limiter named {name!r} in the registry") from None

    def breaker(self, name: str) -> CircuitBreaker:
        """`breaker` is the breaker ``name``; KeyError if there is none."""
        try:
            return self._breakers[name]
        except KeyError:
            raise KeyError(f"no breaker named {name!r} in the registry") from None

    def limiters(self) -> dict[str, AnyLimiter]:
        """`limiters` is a snapshot of the limiters by name."""
        return dict(self._limiters)

    def breakers(self) -> dict[str, CircuitBreaker]:
        """`breakers` is a snapshot of the breakers by name."""
        return dict(self._breakers)

    def backends(self) -> dict[str, Backend]:
        """`backends` is a snapshot of the Redis backends by name."""
        return dict(self._backends)

    def update(self, config: Mapping[str, Any]) -> None:
        """`update` makes ``config`` the configuration in force, or raises
        :class:`ConfigError` and changes nothing.

        A limiter or breaker in both configs is changed in place, in one
        atomic step, keeping its state where its algorithms and number of
        limits stay the same (for the window algorithms, also the period;
        otherwise its state starts new). A limiter whose kind changes
        (Limiter, keyed, Redis), or its max_keys, max_wait, backend or
        failure policy, is replaced by a new object and starts with new
        state; so is a Redis limiter whose limits change (the scripts keep
        each limit's state under a field of its own rate, so the new limits
        start afresh in Redis: at most one extra burst per key).
        Names no longer configured are dropped (objects already handed out
        keep working). Backends whose settings change are reopened; the old
        ones are closed by `close`.
        """
        checked = parse_config(config, self._breaker_defaults)
        with self._lock:
            self._apply(checked, self._config)

    def reload(self) -> None:
        """`reload` re-reads the TOML file of `from_toml` and applies it as
        `update` does; on any error the configuration in force stays."""
        if self._path is None:
            raise RuntimeError("reload needs a registry made by Registry.from_toml")
        self.update(_read_toml(self._path))

    def health(self, timeout: float = DEFAULT_HEALTH_TIMEOUT) -> Health:
        """`health` pings every backend (at most ``timeout`` seconds each)
        and reads every breaker; see :class:`ratefuse.health.Health`."""
        return check_health(self.breakers(), self.backends(), timeout)

    def close(self) -> None:
        """`close` closes every backend the registry opened."""
        with self._lock:
            backends = [*self._backends.values(), *self._retired]
            self._backends, self._retired = {}, []
        for backend in backends:
            backend.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _apply(self, new: Config, old: Config) -> None:
        # Builds everything new first (nothing is changed if that fails, and
        # the backends opened for it are closed), then changes the running
        # objects and swaps the maps.
        opened: list[Backend] = []
        try:
            limiters, changes, backends, breakers = self._prepare(new, old, opened)
        except BaseException:
            for backend in opened:
                backend.close()
            raise
        for running, entry in changes:
            running.update(entry.rates, entry.algorithm)
        for name, rules in new.breakers.items():
            if name in old.breakers and old.breakers[name] != rules:
                breakers[name].reconfigure(rules)
        self._retired.extend(
            backend
            for name, backend in self._backends.items()
            if backends.get(name) is not backend
        )
        self._backends, self._limiters, self._breakers = backends, limiters, breakers
        self._config = new

    def _prepare(
        self, new: Config, old: Config, opened: list[Backend]
    ) -> tuple[
        dict[str, Any],
        list[tuple[Any, LimiterEntry]],
        dict[str, Backend],
        dict[str, CircuitBreaker],
    ]:
        # The objects of `new`, built without touching the running ones;
        # every backend it opens is appended to `opened`. A limiter the
        # schema let through but its backend refuses (an algorithm without
        # a Redis script, an interval below 1 us) is a ConfigError naming it.
        backends: dict[str, Backend] = {}
        for name, settings in new.backends.items():
            if old.backends.get(name) == settings:
                backends[name] = self._backends[name]
            else:
                # No I/O for a single server; a cluster client reads the
                # slot map at once.
                backends[name] = Backend(name, settings)
                opened.append(backends[name])
        limiters: dict[str, Any] = {}
        changes: list[tuple[Any, LimiterEntry]] = []
        errors: list[str] = []
        for name, entry in new.limiters.items():
            before = old.limiters.get(name)
            running = self._limiters.get(name)
            fresh_backend = entry.backend is not None and (
                backends[entry.backend] is not self._backends.get(entry.backend)
            )
            if before is not None and before.shape == entry.shape and not fresh_backend:
                limiters[name] = running
                if before != entry and entry.backend is None:
                    changes.append((running, entry))
                continue
            try:
                limiters[name] = self._build(name, entry, backends)
            except (ValueError, TypeError) as exc:
                errors.append(f"limiters.{name}: {exc}")
        if errors:
            raise ConfigError(errors)
        breakers = {
            name: self._breakers[name]
            if name in old.breakers
            else CircuitBreaker(name, rules, clock=self._clock)
            for name, rules in new.breakers.items()
        }
        return limiters, changes, backends, breakers

    def _build(
        self, name: str, entry: LimiterEntry, backends: dict[str, Backend]
    ) -> Any:
        if entry.backend is not None:
            return backends[entry.backend].limiter(name, entry)
        if entry.keyed:
            return KeyedLimiter(
                entry.rates,
                entry.algorithm,
                max_keys=entry.max_keys,
                clock=self._clock,
                max_wait=entry.max_wait,
            )
        return Limiter(
            entry.rates, entry.algorithm, clock=self._clock, max_wait=entry.max_wait
        )


def _read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as file:
            loaded: dict[str, Any] = tomllib.load(file)
            return loaded
    except OSError as exc:
        raise ConfigError([f"{os.fspath(path)}: cannot read: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{os.fspath(path)}: not valid TOML: {exc}"]) from exc
