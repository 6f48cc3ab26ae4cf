"""Renamed Redis names keep working, with a DeprecationWarning; and the
pieces the scripts are assembled from are read in their declared order."""

from __future__ import annotations

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

import ratefuse.redis
from ratefuse.redis import ScriptReply
from ratefuse.redis._fleet_script import FLEET_SCRIPT, fleet_script_source
from ratefuse.redis._resp import INCOMPLETE, CallReplies
from ratefuse.redis._scripts import PRELUDE, lease_script, read_lua, script


def test_verdict_is_a_deprecated_alias_of_script_reply() -> None:
    with pytest.warns(DeprecationWarning, match="ScriptReply"):
        alias = ratefuse.redis.Verdict  # type: ignore[attr-defined]
    assert alias is ScriptReply
    with pytest.raises(AttributeError):
        ratefuse.redis.NoSuchName  # type: ignore[attr-defined]  # noqa: B018


def test_scripts_are_the_prelude_then_the_algorithm() -> None:
    prelude = read_lua(*PRELUDE)
    assert script("gcra").source == prelude + b"\n" + read_lua("gcra.lua")
    assert lease_script("gcra").source.startswith(prelude + b"\nlocal function exact()")
    assert fleet_script_source() == read_lua(*FLEET_SCRIPT)
    # Each piece defines what the later ones use: the entry point is last.
    assert PRELUDE[-1] == "run.lua"
    assert FLEET_SCRIPT[-1] == "fleet_breaker.lua"


def test_call_replies_skip_each_calls_earlier_replies() -> None:
    # Call 0 was sent behind SCRIPT LOAD and ASKING (3 replies), call 1
    # alone; the bytes arrive split anywhere.
    replies = CallReplies([3, 1])
    stream = b"+OK\r\n+OK\r\n:7\r\n:8\r\n"
    got = []
    for byte in range(len(stream)):
        replies.feed(stream[byte : byte + 1])
        reply = replies.get()
        if reply is not INCOMPLETE:
            got.append((replies.index - 1, reply))
    assert got == [(0, 7), (1, 8)]
    assert not replies.due
    assert replies.in_step
    with pytest.raises(RedisConnectionError):
        CallReplies([1]).feed(b"")
