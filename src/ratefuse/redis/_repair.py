"""Error replies: which ones count against a node, and the repair of a
limiter key that someone overwrote with another type.

An error reply about the server (OOM under maxmemory, BUSY, LOADING,
MASTERDOWN, READONLY, ...) will meet every call to that node, so the
node's breaker counts it and, once open, answers without a round trip. An
error about one key's data (WRONGTYPE, or a script error on what it read)
would fail only that key, so it does not count against the node.

WRONGTYPE means a limiter key holds a type its script does not read: the
key is ours (the schema names it), so its content is garbage. The repair
deletes it, atomically and only if its type is still wrong, and the
limit starts afresh.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from redis.exceptions import ResponseError

from ratefuse.redis._codec import pack_command
from ratefuse.redis._scripts import Script

# Deletes each key whose type is neither none nor ARGV[1]; returns how
# many it deleted.
REPAIR_SCRIPT: Final = b"""local deleted = 0
for i = 1, #KEYS do
  local kind = redis.call('TYPE', KEYS[i]).ok
  if kind ~= 'none' and kind ~= ARGV[1] then
    redis.call('DEL', KEYS[i])
    deleted = deleted + 1
  end
end
return deleted"""
# A script's layout, as its closing `return run({...})` declares it.
_HASH_LAYOUT: Final = re.compile(rb"hash\s*=\s*true")
# Error replies of a script that failed on what it read (Redis 7 names
# the script, or the function; 6.2 wraps the failing command's error in the
# last form).
SCRIPT_ERRORS: Final = (
    "ERR user_script:",
    "ERR user_function:",
    "ERR Error running script",
)
# Error codes about the server, which a 6.2 script error may wrap.
SERVER_ERRORS: Final = re.compile(
    r"\b(OOM|BUSY|LOADING|MASTERDOWN|READONLY|MISCONF|CLUSTERDOWN|NOREPLICAS|"
    r"NOAUTH|NOPERM)\b"
)


def key_type(script: Script) -> bytes:
    """`key_type` is the Redis type of the keys ``script`` keeps: "hash"
    for the hash layout, else "string"."""
    declaration = script.source.rpartition(b"return run(")[2]
    return b"hash" if _HASH_LAYOUT.search(declaration) else b"string"


def repair_command(keys: Sequence[bytes], script: Script) -> bytes:
    """`repair_command` is the EVAL that deletes those of ``keys`` whose
    type ``script`` cannot read."""
    return pack_command("EVAL", REPAIR_SCRIPT, len(keys), *keys, key_type(script))


def is_wrongtype(error: ResponseError) -> bool:
    """`is_wrongtype` is true for a WRONGTYPE error reply (or a 6.2 script
    error wrapping one)."""
    return "WRONGTYPE" in str(error)


def counts_against_node(reply: object) -> bool:
    """`counts_against_node` is true for a transport error (any exception
    but an error reply) and for an error reply about the server rather
    than about one key's data."""
    if not isinstance(reply, BaseException):
        return False
    if not isinstance(reply, ResponseError):
        return True
    text = str(reply)
    if is_wrongtype(reply):
        return False
    if text.startswith(SCRIPT_ERRORS):
        return SERVER_ERRORS.search(text) is not None
    return True
