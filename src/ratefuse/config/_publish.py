"""Pushing a configuration to a store: checked as every follower will check
it, then written by compare-and-set."""

from __future__ import annotations

from ratefuse.config._registry import _check_removals
from ratefuse.config._schema import Config, ConfigError, parse_config
from ratefuse.config._source import ConfigDocument, ConfigStore
from ratefuse.config._toml import parse_toml


def check_document(
    text: bytes,
    current: ConfigDocument | None,
    *,
    allow_removals: bool = False,
    where: str = "config",
) -> Config:
    """`check_document` is the Config of ``text`` (TOML), or a ConfigError
    naming every problem: what a follower would refuse, including an entry
    of ``current`` (the version in the store) that ``text`` drops without
    naming it in ``[removed]``, unless ``allow_removals``."""
    config = parse_config(parse_toml(text, where))
    if current is None or allow_removals:
        return config
    try:
        previous = parse_config(parse_toml(current.text, "the stored version"))
    except ConfigError:
        return config  # nothing valid is in force from the store
    _check_removals(config, previous)
    return config


def push_config(
    store: ConfigStore, text: bytes, *, allow_removals: bool = False
) -> int:
    """`push_config` checks ``text`` against the store's current version
    (`check_document`) and writes it only if the store still holds that
    version; returns the new version. Raises ConfigError (nothing written)
    or VersionConflictError when someone pushed in between."""
    if not isinstance(text, bytes):
        raise TypeError(f"text must be bytes (UTF-8 TOML), got {type(text).__name__}")
    current = store.read()
    check_document(text, current, allow_removals=allow_removals, where="push")
    return store.write(text, 0 if current is None else current.version)
