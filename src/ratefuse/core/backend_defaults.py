"""The Redis backend's failure policies and defaults, without importing
redis: ``ratefuse.redis`` and the config schema (which checks a config
before anything is built) read them here."""

from __future__ import annotations

from typing import Final, Literal

PolicyName = Literal["local", "allow", "deny", "raise"]
POLICIES: Final = ("local", "allow", "deny", "raise")
# What a limiter answers when Redis cannot decide. "deny": the one policy
# that never admits more than the fleet's quota. "local" admits local_share
# of the quota in every process, "allow" everything: both multiply the
# quota by the number of processes, which only the user knows, so only the
# user chooses them (issue 21: a dead cluster node let every process admit
# the whole quota of its keys).
DEFAULT_ON_BACKEND_ERROR: Final[PolicyName] = "deny"
# Seconds a decision may wait for Redis: each connect, send and read.
DEFAULT_TIMEOUT: Final = 0.1
