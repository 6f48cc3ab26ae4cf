"""The fleet breaker's script: its source, arguments and reply. Pure.

`FleetScript` lowers a validated :class:`BreakerConfig` once to the
arguments of ``lua/fleet_breaker.lua`` (integer microseconds) and names the
two keys of one breaker with the project's key schema, so that they share
one hashed tag and thus one Redis Cluster slot. `FleetReply` is the
script's reply as a named tuple.
"""

from __future__ import annotations

import functools
from typing import Final, NamedTuple

from ratefuse.core.breaker.config import BreakerConfig
from ratefuse.redis._schema import KeySchema
from ratefuse.redis._scripts import read_lua
from ratefuse.redis._wire_limits import ceil_us

# Ops of the script.
RECORD: Final = b"f"
ACQUIRE: Final = b"a"
TRANSITION: Final = b"t"
# The bits of one call's byte in a recorded batch: see
# ratefuse/core/breaker/_fleet_recorder_py.py.
# The subject of a breaker's keys: a breaker is one subject of its name.
_SUBJECT: Final = b"breaker"


class FleetReply(NamedTuple):
    """`FleetReply` is the fleet breaker's state after one script call.

    ``granted`` is the generation of a permit the call granted (0: none;
    -1: an illegal manual transition); ``retry_after_us`` is the rest of
    the OPEN wait (-1: never, FORCED_OPEN; 0 otherwise); ``calls``,
    ``failures`` and ``slow`` are the window, or in HALF_OPEN the probe
    round; ``probes_issued`` counts the round's permits (0 outside
    HALF_OPEN).
    """

    granted: int
    state: int
    generation: int
    retry_after_us: int
    calls: int
    failures: int
    slow: int
    probes_issued: int


# The fleet breaker's script: the server's clock, then the breaker.
FLEET_SCRIPT: Final = ("clock.lua", "fleet_breaker.lua")


@functools.cache
def fleet_script_source() -> bytes:
    """`fleet_script_source` is the Lua source of the fleet breaker."""
    return read_lua(*FLEET_SCRIPT)


class FleetScript:
    """`FleetScript` builds the script calls of one fleet breaker.

    ``name``, ``prefix`` and ``namespace`` name its keys (see
    :class:`._schema.KeySchema`); ``idle_ttl_ms`` (>= 1000) is how long a
    breaker nobody uses keeps its state beyond its current wait.
    Immutable and thread-safe.
    """

    __slots__ = ("_config_args", "keys")

    def __init__(
        self,
        config: BreakerConfig,
        name: str,
        prefix: str,
        namespace: str,
        idle_ttl_ms: int,
    ) -> None:
        spec = config.to_spec()
        state = KeySchema(prefix, namespace, name, "fleet_breaker")
        window = KeySchema(prefix, namespace, name, "fleet_breaker_window")
        self.keys: tuple[bytes, bytes] = (state.key(_SUBJECT), window.key(_SUBJECT))
        self._config_args: tuple[bytes, ...] = tuple(
            str(value).encode()
            for value in (
                1 if spec.count_window else 0,
                spec.window_size,
                ceil_us(spec.bucket_ns),
                spec.minimum_calls,
                spec.failure_rate_ppm,
                spec.slow_call_rate_ppm if spec.slow_call_ns else 0,
                ceil_us(spec.wait_ns),
                ceil_us(spec.max_wait_ns),
                repr(spec.backoff_multiplier),
                spec.half_open_calls,
                ceil_us(spec.max_half_open_ns),
                idle_ttl_ms,
            )
        )

    def args(
        self,
        op: bytes,
        now_us: int | None,
        generation: int = 0,
        batch: bytes = b"",
        target: int = 0,
    ) -> list[bytes | int]:
        """`args` is ARGV of one call: ``op`` with the batch of calls
        permitted in ``generation``, or the ``target`` state of a manual
        transition; ``now_us`` None reads the server's TIME."""
        return [
            -1 if now_us is None else now_us,
            op,
            generation,
            batch,
            *self._config_args,
            target,
        ]


def to_reply(raw: object) -> FleetReply:
    """`to_reply` reads the script's reply (a list of 8 integers)."""
    if not isinstance(raw, list) or len(raw) != 8:
        raise ValueError(f"unexpected fleet breaker reply {raw!r}")
    return FleetReply(*(int(value) for value in raw))
