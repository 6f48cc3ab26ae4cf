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
from ratefuse.config._registry import Registry
from ratefuse.config._schema import (
    BackendEntry,
    Config,
    ConfigError,
    LimiterEntry,
    parse_config,
)

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_ENTRIES",
    "MAX_RATES",
    "MAX_WINDOW_SLOTS",
    "BackendEntry",
    "Config",
    "ConfigError",
    "LimiterEntry",
    "Registry",
    "parse_config",
]
