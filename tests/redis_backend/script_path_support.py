"""The script paths the Redis tests run on: every test on a session-wide
backend runs on both (Functions, and the EVALSHA path kept for Redis 6.2
and servers without Functions)."""

from __future__ import annotations

from ratefuse.redis._script_paths import ScriptPath

SCRIPT_PATHS = [ScriptPath.FUNCTIONS, ScriptPath.EVALSHA]


def force_path(backend: object, path: ScriptPath | None) -> None:
    """`force_path` pins every node of ``backend`` (sync or asyncio) to
    ``path`` (None: chosen per node again)."""
    backend._transport.paths.forced = path  # type: ignore[attr-defined]
