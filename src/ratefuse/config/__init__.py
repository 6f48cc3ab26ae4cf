"""Limiters and breakers declared in a dict or a TOML file, by name.

::

    registry = Registry.from_toml("ratefuse.toml")
    api = registry.limiter("api")
    ...
    registry.reload()          # new limits, same objects, same state

See :class:`Registry` and :func:`parse_config` for the schema and README,
"Configuration", for an example file.
"""

from __future__ import annotations

from ratefuse.config._registry import Registry
from ratefuse.config._schema import (
    BackendEntry,
    Config,
    ConfigError,
    LimiterEntry,
    parse_config,
)

__all__ = [
    "BackendEntry",
    "Config",
    "ConfigError",
    "LimiterEntry",
    "Registry",
    "parse_config",
]
