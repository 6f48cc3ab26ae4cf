"""Limiters and breakers declared in a dict or a TOML file, by name.

::

    registry = Registry.from_toml("ratefuse.toml")
    api = registry.limiter("api")
    ...
    registry.reload()          # new limits, same objects, same state

A reload that drops an entry must say so (a ``[removed]`` table naming it,
or ``allow_removals=True``): an empty or half-written file is refused.
What one config may hold is bounded (``MAX_CONFIG_BYTES``, ``MAX_ENTRIES``,
``MAX_RATES``, ``MAX_WINDOW_SLOTS``).

A fleet follows one configuration in Redis or etcd: a
:class:`ConfigFollower` applies to a registry each version its source
(:class:`RedisConfigSource`, :class:`EtcdConfigSource`) delivers, and
:func:`push_config` writes a checked version by compare-and-set
(``ratefuse config push``).

See :class:`Registry` and :func:`parse_config` for the schema and README,
"Configuration", for an example file.
"""

from __future__ import annotations

from ratefuse.config._bounds import (
    MAX_CONFIG_BYTES,
    MAX_ENTRIES,
    MAX_RATES,
    MAX_WINDOW_SLOTS,
)
from ratefuse.config._etcd_source import EtcdConfigSource
from ratefuse.config._etcd_store import EtcdConfigStore
from ratefuse.config._follower import ConfigFollower, FollowerStats
from ratefuse.config._publish import check_document, push_config
from ratefuse.config._redis_source import RedisConfigSource, RedisConfigStore
from ratefuse.config._registry import Registry
from ratefuse.config._schema import (
    BackendEntry,
    Config,
    ConfigError,
    LimiterEntry,
    StaleVersionError,
    parse_config,
)
from ratefuse.config._source import (
    DEFAULT_ACK_TTL,
    Acknowledgement,
    ConfigDocument,
    ConfigSource,
    ConfigStore,
    StoreError,
    VersionConflictError,
)

__all__ = [
    "DEFAULT_ACK_TTL",
    "MAX_CONFIG_BYTES",
    "MAX_ENTRIES",
    "MAX_RATES",
    "MAX_WINDOW_SLOTS",
    "Acknowledgement",
    "BackendEntry",
    "Config",
    "ConfigDocument",
    "ConfigError",
    "ConfigFollower",
    "ConfigSource",
    "ConfigStore",
    "EtcdConfigSource",
    "EtcdConfigStore",
    "FollowerStats",
    "LimiterEntry",
    "RedisConfigSource",
    "RedisConfigStore",
    "Registry",
    "StaleVersionError",
    "StoreError",
    "VersionConflictError",
    "check_document",
    "parse_config",
    "push_config",
]
