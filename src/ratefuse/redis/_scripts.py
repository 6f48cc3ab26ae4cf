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

On Redis 7 a single decision goes out as FCALL instead (see :func:`library`):
one Functions library holds every algorithm, and what a script rebuilds on
every call (the prelude, the parsed limits) lives as long as the library.
Where a node has no Functions, a single decision of one limit goes to the
algorithm's lean script (:func:`lean_script`): lua/lean.lua's decider,
with the exact script as its fallback.
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
# layouts of its key (the sliding log's header before the hash's), one
# subject's decision, a batch's, and the entry point.
PRELUDE: Final = (
    "clock.lua",
    "integers.lua",
    "arguments.lua",
    "compound.lua",
    "state_words.lua",
    "shared_expiry.lua",
    "string_layout.lua",
    "log_header.lua",
    "hash_layout.lua",
    "decide.lua",
    "batch.lua",
    "run.lua",
)


# The Functions library's version: its name is ratefuse_v<N> and its
# functions ratefuse_v<N>_<digest>_<algorithm>, <digest> the first 8 hex
# digits of its code's SHA1. Bump it with any change to the library's
# source (tests/redis_backend/test_redis_functions.py holds the source's
# digest per version), so that servers holding an older library keep it
# for the clients that call it while a newer one loads beside it. The
# digest in the names makes a server holding other code under this name
# (a development build) answer "Function not found", so it is replaced.
LIBRARY_VERSION: Final = 4
LIBRARY_NAME: Final = f"ratefuse_v{LIBRARY_VERSION}"
# The prelude of the library: every part but the batch's and script's
# entry points, then the library's own (FCALL's entry point).
LIBRARY_PRELUDE: Final = (
    *(name for name in PRELUDE if name not in ("batch.lua", "run.lua")),
    "lean.lua",
    "lean_gcra.lua",
    "lean_fixed_window.lua",
    "lean_sliding_window.lua",
    "lean_gcra_pair.lua",
    "lean_sliding_log.lua",
    "library.lua",
)
# Algorithms with a lean single decision (lua/lean.lua): one limit, on
# FCALL and on a lean EVALSHA script of its own (see :func:`lean_script`).
LEAN_ALGORITHMS: Final = ("gcra", "fixed_window", "sliding_window", "sliding_log")
# What a lean EVALSHA script needs ahead of lean.lua, by algorithm: the
# sliding log's layout (its general() holds the prelude's copy, out of
# the lean decider's reach).
_LEAN_PARTS: Final = {"sliding_log": ("shared_expiry.lua", "log_header.lua")}
# An algorithm file's closing statement, and what it becomes in the library.
_RUN: Final = b"return run("


@dataclass(frozen=True)
class Script:
    """`Script` is one algorithm's Lua source and its SHA1 (hex, ASCII);
    ``function`` is the name of its FCALL twin in the library (None: it
    has none, as a lease script)."""

    algorithm: str
    source: bytes
    sha: bytes
    function: bytes | None = None
    # The lean EVALSHA script of the same algorithm (None: it has none).
    lean: Script | None = None


@dataclass(frozen=True)
class Library:
    """`Library` is the Functions library: its name, its source (for
    ``FUNCTION LOAD REPLACE``), the SHA1 (hex, ASCII) of its code (the
    source but its functions' names) and its functions' names by algorithm."""

    name: str
    source: bytes
    sha: bytes
    functions: dict[str, bytes]


def read_lua(*names: str) -> bytes:
    """`read_lua` is the Lua files ``names`` (package data), joined by
    newlines in that order."""
    lua = resources.files("ratefuse.redis").joinpath("lua")
    return b"\n".join(lua.joinpath(name).read_bytes() for name in names)


@functools.cache
def _prelude() -> bytes:
    return read_lua(*PRELUDE)


@functools.cache
def library() -> Library:
    """`library` is the Functions library of every algorithm with a
    script (cached); see ``lua/library.lua``. Each algorithm file ends
    with ``return run({...})`` (the layout's declaration, which the repair
    reads too); here that becomes ``register('<algorithm>', {...})``."""
    # What the registered functions share with build: the deciders it
    # makes, each algorithm's lean deciders by limits (library.lua) and
    # the server's clock (library_function.lua).
    leans = b", ".join(
        b"%s = {}" % algorithm.encode() for algorithm in SCRIPT_ALGORITHMS
    )
    parts = [
        f"#!lua name={LIBRARY_NAME}".encode(),
        b"local deciders = false",
        b"local lean_deciders = {%s}" % leans,
        b"local clock_seconds, clock_us, server_call = false, 0, false",
        b"local function build()",
        read_lua(*LIBRARY_PRELUDE),
    ]
    for algorithm in SCRIPT_ALGORITHMS:
        record = REGISTRY.by_name(algorithm)
        assert record.script is not None
        source = read_lua(record.script)
        body, run, declaration = source.rpartition(_RUN)
        if not run or body.count(_RUN):
            raise ValueError(f"{record.script} must end with one {_RUN!r}")
        parts.append(
            b"do\n%sregister('%s', %s\nend" % (body, algorithm.encode(), declaration)
        )
    parts.append(b"return deciders\nend")
    # The registrations' template is code too; their names, made from
    # the digest, are not.
    registration = read_lua("library_function.lua")
    sha = hashlib.sha1(
        b"\n".join([*parts, registration]), usedforsecurity=False
    ).hexdigest()
    functions = {
        algorithm: f"{LIBRARY_NAME}_{sha[:8]}_{algorithm}".encode()
        for algorithm in SCRIPT_ALGORITHMS
    }
    for algorithm, function in functions.items():
        parts.append(
            registration.replace(b"FUNCTION", function).replace(
                b"ALGORITHM", algorithm.encode()
            )
        )
    return Library(LIBRARY_NAME, b"\n".join(parts), sha.encode(), functions)


@functools.cache
def script(algorithm: str) -> Script:
    """`script` is the registered script of ``algorithm`` (cached)."""
    record = REGISTRY.by_name(algorithm) if algorithm in SCRIPT_ALGORITHMS else None
    if record is None or record.script is None:
        raise ValueError(f"no Redis script for algorithm {algorithm!r}")
    source = _prelude() + b"\n" + read_lua(record.script)
    sha = hashlib.sha1(source, usedforsecurity=False).hexdigest().encode()
    lean = lean_script(algorithm) if algorithm in LEAN_ALGORITHMS else None
    return Script(algorithm, source, sha, library().functions[algorithm], lean)


@functools.cache
def lean_script(algorithm: str) -> Script:
    """`lean_script` is the lean EVALSHA script of ``algorithm`` (cached):
    ``lua/lean_<algorithm>.lua``'s decider run by ``lua/lean_script.lua``,
    with the algorithm's exact script as the function ``general()`` for
    what the lean decider does not read. A script call runs its whole
    chunk, so the prelude, inside ``general``, costs one closure unless it
    is used, and the other algorithms' deciders are left out. The sliding
    log's decider (``lua/lean_sliding_log.lua``) reads its layout with
    ``lua/log_header.lua``'s parts, ahead of it."""
    if algorithm not in LEAN_ALGORITHMS:
        raise ValueError(f"no lean Redis script for algorithm {algorithm!r}")
    record = REGISTRY.by_name(algorithm)
    assert record.script is not None
    source = b"\n".join(
        (
            b"local function general()",
            _prelude(),
            read_lua(record.script),
            b"end",
            read_lua(
                *_LEAN_PARTS.get(algorithm, ()),
                "lean.lua",
                f"lean_{algorithm}.lua",
                "lean_script.lua",
            ),
            b"return lean_run(%s_lean, '%s')"
            % (algorithm.encode(), algorithm.encode()),
        )
    )
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
