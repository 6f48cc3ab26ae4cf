"""Checks ``ratefuse bench`` makes before it runs anything, so that a
missing extra, an unreachable Redis or an unwritable report path fails at
once with a message instead of after the whole run with a traceback."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def require(what: str, modules: Iterable[str], extra: str) -> None:
    """`require` exits with a message naming ``extra`` when any of
    ``modules`` cannot be imported; ``what`` is the feature needing them."""
    missing = []
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise SystemExit(
            f"{what} needs {', '.join(missing)}: pip install 'ratefuse[{extra}]'"
        )


def writable(option: str, path: Path) -> None:
    """`writable` exits with a message when ``path`` (given as ``option``)
    cannot be written; it opens the file for appending, and removes it
    again if it did not exist."""
    existed = path.exists()
    if path.is_dir():
        raise SystemExit(f"{option} {path}: is a directory, not a file")
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise SystemExit(f"{option} {path}: cannot write: {exc.strerror}") from None
    if not existed:
        os.unlink(path)


def reachable(option: str, url: str, *, cluster: bool, timeout: float = 2.0) -> None:
    """`reachable` exits with a message when ``url`` (given as ``option``)
    is not a Redis URL or its server does not answer PING within
    ``timeout`` seconds."""
    require(option, ("redis", "msgpack"), "redis")
    import redis
    from redis.cluster import RedisCluster

    options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    client: Any = None
    try:
        if cluster:
            client = RedisCluster.from_url(url, **options)
        else:
            client = redis.Redis.from_url(url, **options)
        client.ping()
    except Exception as exc:  # any failure: a bad URL, no server, no cluster
        raise SystemExit(f"{option} {url}: cannot use: {exc}") from None
    finally:
        if client is not None:
            client.close()
