"""The Redis backend's failure policies and defaults, without importing
redis: ``ratefuse.redis`` and the config schema (which checks a config
before anything is built) read them here."""

from __future__ import annotations

from typing import Final, Literal

PolicyName = Literal["local", "allow", "deny", "raise"]
POLICIES: Final = ("local", "allow", "deny", "raise")
DEFAULT_ON_BACKEND_ERROR: Final[PolicyName] = "local"
# Seconds a decision may wait for Redis: each connect, send and read.
DEFAULT_TIMEOUT: Final = 0.1
