"""`read_toml`: a configuration file read whole, bounded and checked to be
one version of the file, or a ConfigError saying why not."""

from __future__ import annotations

import os
import sys
from typing import Any

from ratefuse.config._bounds import MAX_CONFIG_BYTES
from ratefuse.config._schema import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """`read_toml` parses the TOML file at ``path``.

    Raises ConfigError (naming the path) when the file cannot be read, is
    larger than MAX_CONFIG_BYTES, is not UTF-8 or not TOML, or changed while
    it was read (a writer rewriting it in place: write the new version
    elsewhere and rename it over the file, which is atomic).
    """
    where = os.fspath(path)
    try:
        with open(path, "rb") as file:
            before = os.fstat(file.fileno())
            if before.st_size > MAX_CONFIG_BYTES:
                raise _too_large(where, before.st_size)
            data = file.read(MAX_CONFIG_BYTES + 1)
            # The open file, not the path: a file renamed over this one
            # while it is read leaves what was read whole.
            after = os.fstat(file.fileno())
    except OSError as exc:
        raise ConfigError([f"{where}: cannot read: {exc}"]) from exc
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_large(where, len(data))
    if len(data) != before.st_size or _version(before) != _version(after):
        raise ConfigError(
            [
                f"{where}: changed while being read; write the new version to "
                "another file and rename it over this one"
            ]
        )
    return parse_toml(data, where)


def parse_toml(data: bytes, where: str) -> dict[str, Any]:
    """`parse_toml` parses ``data``, a configuration from ``where`` (a path
    or a source, for the messages): ConfigError when it is larger than
    MAX_CONFIG_BYTES, not UTF-8 or not TOML."""
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_large(where, len(data))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            [f"{where}: not UTF-8 at byte {exc.start}: {exc.reason}"]
        ) from exc
    try:
        loaded: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{where}: not valid TOML: {exc}"]) from exc
    except RecursionError as exc:  # arrays or inline tables nested too deep
        raise ConfigError([f"{where}: not valid TOML: nested too deep"]) from exc
    return loaded


def _version(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _too_large(where: str, size: int) -> ConfigError:
    return ConfigError(
        [f"{where}: {size} bytes, more than the {MAX_CONFIG_BYTES} a config may hold"]
    )
