"""`Registry`: the limiters and breakers of a configuration, by name, and
their changes at run time."""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ratefuse.breaker import CircuitBreaker
from ratefuse.config._backends import Backend
from ratefuse.config._bounds import MAX_ENTRIES
from ratefuse.config._schema import (
    ENTRY_SECTIONS,
    Config,
    ConfigError,
    LimiterEntry,
    StaleVersionError,
    parse_config,
)
from ratefuse.config._toml import read_toml
from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.engine.log_events import CONFIG_LOGGER, LogEvent, emit
from ratefuse.health import DEFAULT_HEALTH_TIMEOUT, Health, check_health
from ratefuse.keyed import KeyedLimiter
from ratefuse.limiter import Limiter

if TYPE_CHECKING:
    from typing import TypeAlias

    from ratefuse.redis import RedisLimiter

    AnyLimiter: TypeAlias = Limiter | KeyedLimiter | RedisLimiter
Clock = Callable[[], int]
_logger = logging.getLogger(CONFIG_LOGGER)


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
        self._version: int | None = None
        self._config = parse_config({} if config is None else config, breaker_defaults)
        self._backends: dict[str, Backend] = {}
        self._retired: list[Backend] = []
        self._limiters: dict[str, Any] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        # Entries dropped on purpose, kept (the latest MAX_ENTRIES of each
        # kind) so that one coming back keeps its state.
        self._dropped_limiters: OrderedDict[str, tuple[LimiterEntry, Any]] = (
            OrderedDict()
        )
        self._dropped_breakers: OrderedDict[
            str, tuple[BreakerConfig, CircuitBreaker]
        ] = OrderedDict()
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
        registry = cls(read_toml(path), clock=clock, breaker_defaults=breaker_defaults)
        registry._path = os.fspath(path)
        return registry

    @property
    def config(self) -> Config:
        """`config` is the configuration in force."""
        return self._config

    @property
    def config_version(self) -> int | None:
        """`config_version` is the version of the configuration in force,
        as its source numbered it (see `update`); None until a versioned
        configuration is applied."""
        return self._version

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

    def update(
        self,
        config: Mapping[str, Any],
        *,
        allow_removals: bool = False,
        version: int | None = None,
    ) -> None:
        """`update` makes ``config`` the configuration in force, or raises
        :class:`ConfigError` and changes nothing.

        A config that lacks a backend, limiter or breaker in force is
        refused (an empty or half-written file must not drop them) unless
        it names each one in its ``removed`` table (``{"removed":
        {"limiters": ["old"]}}``; in TOML ``[removed]`` then ``limiters =
        ["old"]``) or ``allow_removals`` is true. A dropped limiter or
        breaker that comes back later, of the same kind, is the same
        object with its state (its quota, an OPEN breaker's wait).

        A limiter or breaker in both configs is changed in place, in one
        atomic step, keeping its state where its algorithms and number of
        limits stay the same (for the window algorithms, also the period;
        otherwise its state starts new). A limiter whose kind changes
        (Limiter, keyed, Redis), or its max_keys, max_wait, backend or
        failure policy, is replaced by a new object and starts with new
        state; so is a Redis limiter whose limits change (the scripts keep
        each limit's state under a field of its own rate, so the new limits
        start afresh in Redis: at most one extra burst per key).
        Objects already handed out keep working after their name is
        dropped. Backends whose settings change are reopened; the old ones
        are closed by `close`.

        ``version`` (a config source's number for ``config``) must be above
        `config_version`: an older or equal version raises
        :class:`StaleVersionError` and changes nothing, so no order of
        delivery applies an older configuration over a newer one.
        """
        try:
            checked = parse_config(config, self._breaker_defaults)
            with self._lock:
                if (
                    version is not None
                    and self._version is not None
                    and version <= self._version
                ):
                    raise StaleVersionError(version, self._version)
                if not allow_removals:
                    _check_removals(checked, self._config)
                self._apply(checked, self._config)
                if version is not None:
                    self._version = version
        except StaleVersionError:
            raise  # an order of delivery, not a refused configuration
        except Exception as exc:
            if version is None:  # a versioned update's source logs its own
                self._log_rejected(exc)
            raise
        if version is None:
            emit(
                _logger,
                logging.INFO,
                LogEvent.CONFIG_RELOADED,
                "configuration %s applied: %d limiters, %d breakers, %d backends",
                self._path or "update",
                len(checked.limiters),
                len(checked.breakers),
                len(checked.backends),
                source=self._path or "update",
                limiters=len(checked.limiters),
                breakers=len(checked.breakers),
                backends=len(checked.backends),
            )

    def reload(self, *, allow_removals: bool = False) -> None:
        """`reload` re-reads the TOML file of `from_toml` and applies it as
        `update` does; on any error (a file that drops entries without
        naming them in ``[removed]`` included) the configuration in force
        stays."""
        if self._path is None:
            raise RuntimeError("reload needs a registry made by Registry.from_toml")
        try:
            config = read_toml(self._path)
        except Exception as exc:
            self._log_rejected(exc)
            raise
        self.update(config, allow_removals=allow_removals)

    def _log_rejected(self, error: Exception) -> None:
        # A refused change leaves the configuration in force: say why.
        emit(
            _logger,
            logging.ERROR,
            LogEvent.CONFIG_REJECTED,
            "configuration %s refused, the one in force stays: %s",
            self._path or "update",
            error,
            source=self._path or "update",
            error=f"{type(error).__name__}: {error}",
        )

    def health(self, timeout: float = DEFAULT_HEALTH_TIMEOUT) -> Health:
        """`health` pings every backend (at most ``timeout`` seconds each)
        and reads every breaker; see :class:`ratefuse.health.Health`."""
        health = check_health(self.breakers(), self.backends(), timeout)
        return dataclasses.replace(health, config_version=self._version)

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
            previous = self._previous_breaker(name, old)
            if previous is not None and previous[0] != rules:
                breakers[name].reconfigure(rules)
        self._retired.extend(
            backend
            for name, backend in self._backends.items()
            if backends.get(name) is not backend
        )
        for name in limiters.keys() & self._dropped_limiters.keys():
            del self._dropped_limiters[name]
        for name in breakers.keys() & self._dropped_breakers.keys():
            del self._dropped_breakers[name]
        for name in old.limiters.keys() - limiters.keys():
            _keep(
                self._dropped_limiters, name, (old.limiters[name], self._limiters[name])
            )
        for name in old.breakers.keys() - breakers.keys():
            _keep(
                self._dropped_breakers, name, (old.breakers[name], self._breakers[name])
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
        errors: list[str] = []
        backends: dict[str, Backend] = {}
        for name, settings in new.backends.items():
            if old.backends.get(name) == settings:
                backends[name] = self._backends[name]
                continue
            # No I/O for a single server; a cluster client reads the slot
            # map at once. Whatever fails (no redis-py, a URL it cannot
            # parse, an unreachable cluster) rejects the config whole.
            try:
                backends[name] = Backend(name, settings)
            except ImportError:
                errors.append(
                    f"backends.{name}: needs redis-py: pip install 'ratefuse[redis]'"
                )
            except Exception as exc:
                errors.append(f"backends.{name}: cannot open: {exc}")
            else:
                opened.append(backends[name])
        limiters: dict[str, Any] = {}
        changes: list[tuple[Any, LimiterEntry]] = []
        for name, entry in new.limiters.items():
            if entry.backend is not None and entry.backend not in backends:
                continue  # its backend's error is reported
            before, running = old.limiters.get(name), self._limiters.get(name)
            if (
                before is None
                and entry.backend is None
                and name in self._dropped_limiters
            ):
                # An in-memory limiter coming back (a Redis one keeps its
                # state in Redis under its name anyway).
                before, running = self._dropped_limiters[name]
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
            except (ValueError, TypeError, ArithmeticError) as exc:
                errors.append(f"limiters.{name}: {exc}")
        if errors:
            raise ConfigError(errors)
        breakers = {}
        for name, rules in new.breakers.items():
            previous = self._previous_breaker(name, old)
            breakers[name] = (
                CircuitBreaker(name, rules, clock=self._clock)
                if previous is None
                else previous[1]
            )
        return limiters, changes, backends, breakers

    def _previous_breaker(
        self, name: str, old: Config
    ) -> tuple[BreakerConfig, CircuitBreaker] | None:
        # The breaker `name` in force, or dropped earlier, with its rules.
        if name in old.breakers:
            return old.breakers[name], self._breakers[name]
        return self._dropped_breakers.get(name)

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


def _check_removals(new: Config, old: Config) -> None:
    # ConfigError naming every entry in force that `new` lacks and does not
    # name in its [removed] table.
    errors = [
        f"{section}.{name}: missing from the new config; name it in "
        f"removed.{section} (or pass allow_removals=True) to drop it"
        for section in ENTRY_SECTIONS
        for name in sorted(
            old.names(section) - new.names(section) - new.removed[section]
        )
    ]
    if errors:
        raise ConfigError(errors)


def _keep(dropped: OrderedDict[str, Any], name: str, item: Any) -> None:
    # Remembers a dropped entry, forgetting the oldest beyond MAX_ENTRIES.
    dropped[name] = item
    dropped.move_to_end(name)
    while len(dropped) > MAX_ENTRIES:
        dropped.popitem(last=False)
