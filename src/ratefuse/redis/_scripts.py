"""The script registry: one Lua script per algorithm, package data.

A script's source is the prelude, the files of `PRELUDE` in that order (each
defines what the later ones use), followed by ``lua/<algorithm>.lua``, which
ends with ``return run(<its step>)``. Its SHA1 is computed here, so calls go
out as EVALSHA from the first one and a server that answers NOSCRIPT gets
``SCRIPT LOAD`` and the call again (see :mod:`._exchange`). Nothing is
registered by import side effects.

Quota leases have their own script (see :func:`lease_script`): the prelude,
the algorithm's exact script wrapped as the function ``exact()``, then
``lua/<algorithm>_lease.lua``, which composes exact decisions.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Final

from ratefuse.core.algorithms import REGISTRY
from ratefuse.redis._wire_limits import SCRIPT_ALGORITHMS

# Algorithms whose leases keep the documented bound (see _lease_config.py).
LEASE_ALGORITHMS: Final = REGISTRY.named(lambda algorithm: algorithm.leasable)
# The prelude of every limiter script, in order: the server's clock,
# integer arithmetic, the calling convention's arguments, compound limits,
# a subject's state words, the expiry of a key other limits share, the two
# layouts of its key, one subject's decision, a batch's, and the entry point.
PRELUDE: Final = (
    "clock.lua",
    "integers.lua",
    "arguments.lua",
    "compound.lua",
    "state_words.lua",
    "shared_expiry.lua",
    "string_layout.lua",
    "hash_layout.lua",
    "decide.lua",
    "batch.lua",
    "run.lua",
)


@dataclass(frozen=True)
class Script:
    """`Script` is one algorithm's Lua source and its SHA1 (hex, ASCII)."""

    algorithm: str
    source: bytes
    sha: bytes


def read_lua(*names: str) -> bytes:
    """`read_lua` is the Lua files ``names`` (package data), joined by
    newlines in that order."""
    lua = resources.files("ratefuse.redis").joinpath("lua")
    return b"\n".join(lua.joinpath(name).read_bytes() for name in names)


@functools.cache
def _prelude() -> bytes:
    return read_lua(*PRELUDE)


@functools.cache
def script(algorithm: str) -> Script:
    """`script` is the registered script of ``algorithm`` (cached)."""
    record = REGISTRY.by_name(algorithm) if algorithm in SCRIPT_ALGORITHMS else None
    if record is None or record.script is None:
        raise ValueError(f"no Redis script for algorithm {algorithm!r}")
    source = _prelude() + b"\n" + read_lua(record.script)
    sha = hashlib.sha1(source, usedforsecurity=False).hexdigest().encode()
    return Script(algorithm, source, sha)


@functools.cache
def lease_script(algorithm: str) -> Script:
    """`lease_script` is the "take at most k" lease script of ``algorithm``
    (cached); raises ValueError for an algorithm without one."""
    record = REGISTRY.by_name(algorithm) if algorithm in LEASE_ALGORITHMS else None
    if record is None or record.script is None or record.lease_script is None:
        raise ValueError(
            f"quota leases need algorithm {' or '.join(LEASE_ALGORITHMS)}, "
            f"got {algorithm!r}"
        )
    source = b"\n".join(
        (
            _prelude(),
            b"local function exact()",
            read_lua(record.script),
            b"end",
            read_lua(record.lease_script),
        )
    )
    sha = hashlib.sha1(source, usedforsecurity=False).hexdigest().encode()
    return Script(algorithm, source, sha)
