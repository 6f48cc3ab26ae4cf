"""The Redis server's time per decision: ratefuse's scripts beside a
minimal stateful script and the peers' scripts, on the same server.

A case's decisions run back to back after ``CONFIG RESETSTAT``; then
``INFO commandstats`` gives the microseconds the server spent in the
commands a decision sends (its ``commands``: the script calls, whose time
includes the commands they run inside), divided by the decisions made.
Wall time and the client's CPU time are taken over the same loop. Rounds
interleave the cases, so that a slow phase of the machine meets them all.

The targets of issue 15 compare each ratefuse algorithm with the minimal
script (TIME, GET, then SET with PX: the least any stateful decision on
the server's clock does) and sliding_log with `limits`' moving window.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

# The floor a stateful, server-clocked decision is held against.
MINIMAL_SCRIPT: Final = (
    "local now = redis.call('TIME') "
    "local value = redis.call('GET', KEYS[1]) "
    "redis.call('SET', KEYS[1], now[1], 'PX', 60000) "
    "return 1"
)
# The least a decision keeping one integer of state in the binary "string"
# layout (lua/string_layout.lua) does, with no decision logic: TIME as a
# number, GET, one struct.unpack of the entry with its checks (size, id,
# an integer from 0), one struct.pack, SET with PXAT formatted, and one
# integer as the reply. What the encoding costs, below which no lean
# decision can go.
BINARY_STATE_SCRIPT: Final = (
    "local t = redis.call('TIME') "
    "local now = t[1] * 1000000 + t[2] "
    "local raw = redis.call('GET', KEYS[1]) "
    "local tat = now "
    "if raw and #raw == 14 then "
    "local id, word = struct.unpack('c6<d', raw) "
    "if id == '1/2/3 ' and word >= 0 and word % 1 == 0 then tat = word end "
    "end "
    "tat = (tat > now and tat or now) + 10 "
    "redis.call('SET', KEYS[1], struct.pack('c0<d', '1/2/3 ', tat), 'PXAT', "
    "string.format('%d', (tat - tat % 1000) / 1000 + 1)) "
    "return tat - now"
)
BINARY_FLOOR: Final = "floor: one-integer state, binary"
# The commands a script-based decision sends; what its script runs
# inside is counted in their time.
SCRIPT_COMMANDS: Final = ("evalsha", "eval", "fcall", "fcall_ro")
# Every case admits: far above what one client reaches on one server.
RATE: Final = "100000/s"
COMPOUND_RATE: Final = "100000/s; 10000000/h"
MINIMAL: Final = "minimal TIME+GET+SET PX"
# The same script as a Redis 7 function (FCALL), where the server has
# Functions: what FCALL itself costs beside EVALSHA.
MINIMAL_FUNCTION: Final = "minimal TIME+GET+SET PX (FCALL)"


def function_library(library: str, functions: dict[str, str]) -> str:
    """`function_library` is the Redis Functions library ``library`` that
    registers each script of ``functions`` (name: script with one key,
    KEYS[1]) as a function of that name."""
    registered = (
        f"redis.register_function('{name}', function(keys, args) "
        + script.replace("KEYS[1]", "keys[1]")
        + " end)"
        for name, script in functions.items()
    )
    return f"#!lua name={library}\n" + "\n".join(registered)


_MINIMAL_LIBRARY: Final = function_library(
    "ratefuse_bench_minimal",
    {
        "ratefuse_bench_minimal": MINIMAL_SCRIPT,
        "ratefuse_bench_binary": BINARY_STATE_SCRIPT,
    },
)
ALGORITHMS: Final = ("gcra", "fixed_window", "sliding_window", "sliding_log")
COMPOUND: Final = "ratefuse gcra x2 (compound)"


@dataclass(frozen=True)
class ServerTimeCase:
    """`ServerTimeCase` is one kind of decision: ``make`` builds, on a
    client, the callable that makes one decision; ``commands`` are the
    commands it sends (commandstats names, lower case)."""

    name: str
    make: Callable[[Any], Callable[[], object]]
    commands: tuple[str, ...] = SCRIPT_COMMANDS


@dataclass(frozen=True)
class ServerTime:
    """`ServerTime` is one measured run of a case: ``server_us`` the
    server's microseconds per decision, ``commands`` the commands per
    decision, ``wall_us`` and ``cpu_us`` the client's wall and CPU time
    per decision."""

    name: str
    decisions: int
    server_us: float
    commands: float
    wall_us: float
    cpu_us: float


def _name(what: str) -> str:
    return f"bench-server-{what}-{os.getpid()}-{time.monotonic_ns()}"


def _minimal_function(client: Any) -> Callable[[], object]:
    client.execute_command("FUNCTION", "LOAD", "REPLACE", _MINIMAL_LIBRARY)
    return partial(client.fcall, "ratefuse_bench_minimal", 1, _name("minimal-fcall"))


def _binary_floor(client: Any) -> Callable[[], object]:
    # A function where the server has them, as ratefuse's lean decisions.
    if _has_functions(client):
        client.execute_command("FUNCTION", "LOAD", "REPLACE", _MINIMAL_LIBRARY)
        return partial(client.fcall, "ratefuse_bench_binary", 1, _name("binary"))
    sha = client.script_load(BINARY_STATE_SCRIPT)
    return partial(client.evalsha, sha, 1, _name("binary"))


def _has_functions(client: Any) -> bool:
    try:
        client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", "ratefuse_bench")
    except Exception:  # 6.2, no Functions, or an ACL without them
        return False
    return True


def _ratefuse(rate: str, algorithm: str, client: Any) -> Callable[[], object]:
    from ratefuse.redis import RedisLimiter

    limiter = RedisLimiter(rate, algorithm, backend=client, name=_name(algorithm))
    if not limiter.try_acquire("subject"):
        raise SystemExit(f"ratefuse {algorithm}: the first decision was a denial")
    # The bound method holds the limiter (see redis_scenarios' module doc).
    return partial(limiter.try_acquire, "subject")


def _minimal(client: Any) -> Callable[[], object]:
    sha = client.script_load(MINIMAL_SCRIPT)
    return partial(client.evalsha, sha, 1, _name("minimal"))


def _limits(strategy: str, client: Any) -> Callable[[], object]:
    from limits import parse, storage, strategies

    kwargs = client.connection_pool.connection_kwargs
    url = f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}"
    limiter = getattr(strategies, strategy)(storage.storage_from_string(url))
    item = parse(RATE.replace("/s", "/second"))
    return partial(limiter.hit, item, _name(strategy))


def server_time_cases(client: Any, peers: bool = True) -> list[ServerTimeCase]:
    """`server_time_cases` is the minimal script (and, when ``client``'s
    server has Functions, the same as a function), the binary state's
    floor (a function where there are Functions), ratefuse's algorithms
    (one subject, one limit), a compound of two gcra limits and, with
    ``peers`` (and `limits` installed), `limits`' three Redis strategies."""
    cases = [ServerTimeCase(MINIMAL, _minimal)]
    if _has_functions(client):
        cases.append(ServerTimeCase(MINIMAL_FUNCTION, _minimal_function))
    cases.append(ServerTimeCase(BINARY_FLOOR, _binary_floor))
    cases += [
        ServerTimeCase(f"ratefuse {algorithm}", partial(_ratefuse, RATE, algorithm))
        for algorithm in ALGORITHMS
    ]
    cases.append(ServerTimeCase(COMPOUND, partial(_ratefuse, COMPOUND_RATE, "gcra")))
    if peers and _has_limits():
        for label, strategy in (
            ("fixed window", "FixedWindowRateLimiter"),
            ("moving window", "MovingWindowRateLimiter"),
            ("sliding window counter", "SlidingWindowCounterRateLimiter"),
        ):
            cases.append(ServerTimeCase(f"limits {label}", partial(_limits, strategy)))
    return cases


def _has_limits() -> bool:
    try:
        import limits  # noqa: F401
    except ImportError:
        return False
    return True


def _command_stats(client: Any, commands: Sequence[str]) -> tuple[int, int]:
    # (calls, usec) summed over ``commands`` since the last RESETSTAT.
    stats = client.info("commandstats")
    calls = usec = 0
    for command in commands:
        entry = stats.get(f"cmdstat_{command}")
        if entry:
            calls += int(entry["calls"])
            usec += int(entry["usec"])
    return calls, usec


def measure(
    client: Any,
    name: str,
    decide: Callable[[], object],
    commands: Sequence[str],
    n: int,
) -> ServerTime:
    """`measure` runs ``decide`` ``n`` times after CONFIG RESETSTAT and
    reads the server's time for ``commands`` from INFO commandstats."""
    client.config_resetstat()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        decide()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    calls, usec = _command_stats(client, commands)
    return ServerTime(name, n, usec / n, calls / n, wall * 1e6 / n, cpu * 1e6 / n)


def interleaved(
    client: Any, cases: Sequence[ServerTimeCase], decisions: int, rounds: int
) -> Iterator[list[ServerTime]]:
    """`interleaved` yields, round by round, one `ServerTime` per case (in
    the order of ``cases``), each of ``decisions`` decisions; the cases'
    callables are built (and their scripts loaded) once, before round 1."""
    built = [(case, case.make(client)) for case in cases]
    for decide in (decide for _, decide in built):
        for _ in range(50):  # warm: scripts loaded, connections open
            decide()
    for _ in range(rounds):
        yield [
            measure(client, case.name, decide, case.commands, decisions)
            for case, decide in built
        ]


def medians(runs: Sequence[list[ServerTime]]) -> dict[str, ServerTime]:
    """`medians` is, per case, the median of each figure over ``runs``."""
    result = {}
    for column in zip(*runs, strict=True):
        first = column[0]
        result[first.name] = ServerTime(
            first.name,
            first.decisions,
            statistics.median(run.server_us for run in column),
            statistics.median(run.commands for run in column),
            statistics.median(run.wall_us for run in column),
            statistics.median(run.cpu_us for run in column),
        )
    return result
