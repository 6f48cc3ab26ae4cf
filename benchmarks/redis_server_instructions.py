"""The Redis server's instructions per exact decision, counted by callgrind:
what the server executes, which a loaded machine cannot distort (its
time, INFO commandstats, is benchmarks/redis_server_time.py).

A redis-server runs under ``valgrind --tool=callgrind`` collecting only
inside the script commands' procedures (``evalGenericCommand``, which
EVAL and EVALSHA run, and ``fcallCommand``): the span INFO commandstats
times, commands the script runs included. Per case: zero the counters,
run N decisions, dump, read the total. The minimal script (TIME, GET,
SET with PX, as redis_server_time.py's) is the reference; ratefuse's
algorithms run through the public API on each script path (FCALL of
the Functions library, and EVALSHA), and the floor cases are what any
decision pays with no logic at all: TIME, GET, SET PXAT and a reply of
five integers, on each path; and what a decision keeping one integer of
state pays (read, convert, format, write, one integer back), as decimal
text and in the binary "string" layout the scripts keep
(redis_server_time.BINARY_STATE_SCRIPT); and the commands of a lean
sliding log decision alone (TIME, HGET, HSET).

    python benchmarks/redis_server_instructions.py [--decisions 2000]
        [--only SUBSTRING]

Targets of issue 15 (instructions here, time there): gcra, fixed_window
and sliding_window at most 1.2x the minimal script, a compound of two at
most 1.5x, sliding_log at most `limits`' moving window. Needs valgrind
(callgrind_control) and redis-server 7; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
from checkout import use_checkout  # noqa: E402

use_checkout(tests=True)

import redis  # noqa: E402

from ratefuse.bench.redis_server_time import (  # noqa: E402
    BINARY_STATE_SCRIPT,
    COMPOUND_RATE,
    MINIMAL_SCRIPT,
    RATE,
    function_library,
)
from ratefuse.redis import RedisBackend, RedisLimiter  # noqa: E402
from ratefuse.redis._script_paths import ScriptPath  # noqa: E402
from redis_servers import free_port, ping  # noqa: E402

MINIMAL = "minimal TIME+GET+SET PX (EVALSHA)"
# The least a decision on the server's clock that writes its state and
# replies with five integers runs: no parsing, no arithmetic.
FLOOR_SCRIPT = (
    "local now = redis.call('TIME') "
    "local value = redis.call('GET', KEYS[1]) "
    "redis.call('SET', KEYS[1], now[1], 'PXAT', now[1] * 1000 + 60000) "
    "return {1, 99, 0, 10, 0}"
)
# The least a decision that keeps one integer of state as decimal text,
# on the server's clock in microseconds, does: TIME as a number, GET, one
# pattern match and conversion, one formatted value, PXAT in ms, and one
# integer as the reply; no decision logic.
STATE_SCRIPT = (
    "local t = redis.call('TIME') "
    "local now = t[1] * 1000000 + t[2] "
    "local raw = redis.call('GET', KEYS[1]) "
    "local tat = raw and tonumber(string.match(raw, '^1/2/3 (%d+)$')) or now "
    "tat = (tat > now and tat or now) + 10 "
    "redis.call('SET', KEYS[1], string.format('%s %d', '1/2/3', tat), 'PXAT', "
    "string.format('%d', (tat - tat % 1000) / 1000 + 1)) "
    "return tat - now"
)
# The commands of a lean sliding log decision and nothing else: TIME, HGET
# of the 65-byte header, HSET of the header and a 10-byte entry in a ring
# slot (lua/log_header.lua), one integer back.
LOG_SCRIPT = (
    "local t = redis.call('TIME') "
    "local raw = redis.call('HGET', KEYS[1], '1/2') "
    "redis.call('HSET', KEYS[1], '1/2', string.rep('h', 65), "
    "'1/2' .. struct.pack('<I4', t[2] % 100000), 'eeeeeeeeee') "
    "return 1"
)
_LIBRARY = function_library(
    "ratefuse_bench_instructions",
    {
        "ratefuse_bench_minimal": MINIMAL_SCRIPT,
        "ratefuse_bench_floor": FLOOR_SCRIPT,
        "ratefuse_bench_state": STATE_SCRIPT,
        "ratefuse_bench_binary": BINARY_STATE_SCRIPT,
        "ratefuse_bench_log": LOG_SCRIPT,
    },
)
ALGORITHMS = ("gcra", "fixed_window", "sliding_window", "sliding_log")
PATHS = {"FCALL": ScriptPath.FUNCTIONS, "EVALSHA": ScriptPath.EVALSHA}
# (case, reference, at most this many times the reference); a ratefuse
# case is met by its cheaper path (the one chosen for it).
TARGETS = (
    ("ratefuse gcra", MINIMAL, 1.2),
    ("ratefuse fixed_window", MINIMAL, 1.2),
    ("ratefuse sliding_window", MINIMAL, 1.2),
    ("ratefuse gcra x2 (compound)", MINIMAL, 1.5),
    ("ratefuse sliding_log", "limits moving window", 1.0),
)


class CallgrindRedis:
    """`CallgrindRedis` is a redis-server under callgrind on a free
    loopback port, collecting inside the script commands only."""

    def __init__(self) -> None:
        if (
            shutil.which("valgrind") is None
            or shutil.which("callgrind_control") is None
        ):
            raise SystemExit("valgrind (callgrind) is not installed")
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="ratefuse-callgrind-"))
        self.process = subprocess.Popen(
            [
                "valgrind", "--tool=callgrind", "--collect-atstart=no",
                "--toggle-collect=evalGenericCommand",
                "--toggle-collect=fcallCommand",
                f"--callgrind-out-file={self.directory}/callgrind.out",
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not ping(self.port, timeout=2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit("redis-server under callgrind did not start")
            time.sleep(0.2)

    def _control(self, option: str) -> None:
        subprocess.run(
            ["callgrind_control", option, str(self.process.pid)],
            capture_output=True,
            check=True,
            timeout=60,
        )

    def instructions(self, decide: Callable[[], object], n: int) -> float:
        """`instructions` is the instructions per call of ``decide``, over
        ``n`` calls."""
        self._control("--zero")
        for _ in range(n):
            decide()
        before = set(glob.glob(f"{self.directory}/callgrind.out*"))
        self._control("--dump")
        (dump,) = set(glob.glob(f"{self.directory}/callgrind.out*")) - before
        with open(dump) as lines:
            for line in lines:
                if line.startswith("totals:"):
                    return int(line.split()[1]) / n
        raise RuntimeError(f"no totals in {dump}")

    def stop(self) -> None:
        """`stop` terminates the server and removes its directory."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


def _name(what: str) -> str:
    return f"bench-instructions-{what}-{os.getpid()}"


def _ratefuse(rate: str, algorithm: str, path: ScriptPath, client: Any) -> Any:
    # Under callgrind a call takes milliseconds: the default timeout's
    # failure policy would answer instead.
    backend = RedisBackend(client, timeout=30.0)
    backend._transport.paths.forced = path
    name = _name(f"{algorithm}-{path.name}-{rate.count(';')}")
    limiter = RedisLimiter(rate, algorithm, backend=backend, name=name)
    if not limiter.try_acquire("subject"):
        raise SystemExit(f"ratefuse {algorithm}: the first decision was a denial")
    return partial(limiter.try_acquire, "subject")


def _evalsha(script: str, what: str, client: Any) -> Any:
    return partial(client.evalsha, client.script_load(script), 1, _name(what))


def _fcall(function: str, client: Any) -> Any:
    return partial(client.fcall, function, 1, _name(function))


def _limits(client: Any) -> Any:
    from limits import parse, storage, strategies

    kwargs = client.connection_pool.connection_kwargs
    url = f"redis://{kwargs['host']}:{kwargs['port']}"
    limiter = strategies.MovingWindowRateLimiter(storage.storage_from_string(url))
    return partial(limiter.hit, parse(RATE.replace("/s", "/second")), _name("mw"))


def cases() -> list[tuple[str, Callable[[Any], Any]]]:
    """`cases` is every case's name and its maker (client -> decide)."""
    made: list[tuple[str, Callable[[Any], Any]]] = [
        (MINIMAL, partial(_evalsha, MINIMAL_SCRIPT, "minimal")),
        ("minimal TIME+GET+SET PX (FCALL)", partial(_fcall, "ratefuse_bench_minimal")),
        ("floor + PXAT + 5 ints (EVALSHA)", partial(_evalsha, FLOOR_SCRIPT, "floor")),
        ("floor + PXAT + 5 ints (FCALL)", partial(_fcall, "ratefuse_bench_floor")),
        (
            "floor: one-integer state (EVALSHA)",
            partial(_evalsha, STATE_SCRIPT, "state"),
        ),
        ("floor: one-integer state (FCALL)", partial(_fcall, "ratefuse_bench_state")),
        (
            "floor: one-integer state, binary (EVALSHA)",
            partial(_evalsha, BINARY_STATE_SCRIPT, "binary"),
        ),
        (
            "floor: one-integer state, binary (FCALL)",
            partial(_fcall, "ratefuse_bench_binary"),
        ),
        ("floor: sliding log commands (EVALSHA)", partial(_evalsha, LOG_SCRIPT, "log")),
        ("floor: sliding log commands (FCALL)", partial(_fcall, "ratefuse_bench_log")),
    ]
    for label, path in PATHS.items():
        for algorithm in ALGORITHMS:
            made.append(
                (
                    f"ratefuse {algorithm} ({label})",
                    partial(_ratefuse, RATE, algorithm, path),
                )
            )
        made.append(
            (
                f"ratefuse gcra x2 (compound) ({label})",
                partial(_ratefuse, COMPOUND_RATE, "gcra", path),
            )
        )
    made.append(("limits moving window", _limits))
    return made


def best(by_name: dict[str, float], case: str) -> tuple[str, float] | None:
    """`best` is the cheaper path's name and figure of ``case`` (a case
    measured without paths is its own)."""
    if case in by_name:
        return case, by_name[case]
    found = [
        (name, value) for name, value in by_name.items() if name.startswith(case + " (")
    ]
    return min(found, key=lambda item: item[1]) if found else None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--only", action="append", default=[], metavar="SUBSTRING")
    args = parser.parse_args(argv)
    server = CallgrindRedis()
    try:
        client = redis.Redis(port=server.port, socket_timeout=60)
        client.execute_command("FUNCTION", "LOAD", "REPLACE", _LIBRARY)
        print(
            f"redis {client.info('server')['redis_version']} under callgrind: "
            f"instructions per decision in EVAL/EVALSHA/FCALL, {args.decisions} each"
        )
        by_name: dict[str, float] = {}
        # Every case is built and warmed before any is measured: each then
        # meets the same server (its Lua heaps, which the collector walks,
        # hold every script and library loaded), as in an interleaved run.
        built = [
            (name, make(client))
            for name, make in cases()
            if not args.only or name == MINIMAL or any(s in name for s in args.only)
        ]
        for _, decide in built:
            for _ in range(20):  # warm: scripts loaded, libraries built
                decide()
        for name, decide in built:
            by_name[name] = server.instructions(decide, args.decisions)
            print(
                f"{name:44} {by_name[name]:10.0f} "
                f"{by_name[name] / by_name[MINIMAL]:6.2f}x minimal",
                flush=True,
            )
    finally:
        server.stop()
    held = True
    print()
    for case, reference, bound in TARGETS:
        mine, theirs = best(by_name, case), best(by_name, reference)
        if mine is None or theirs is None:
            continue
        ratio = mine[1] / theirs[1]
        held = held and ratio <= bound
        verdict = "met" if ratio <= bound else "MISSED"
        print(f"{mine[0]:44} {ratio:5.2f}x {reference}, target <= {bound}: {verdict}")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
