"""The server's instructions per key of decide_many (callgrind), for this
checkout and another (e.g. main), beside the floor: a script that only
stores each new key (SET with PXAT, as ratefuse's scripts do).

Instruction counts do not move with the machine's load, unlike the wall
times of benchmarks/redis_batch_versus.py. Each variant runs on its own
redis-server under ``valgrind --tool=callgrind`` (on a free loopback
port, stopped by SHUTDOWN NOSAVE): ``fresh`` decides 20 batches of 1,000
new keys (after one batch that loads the script), ``known`` 20 batches
over 4 batches of 1,000 keys in rotation (after one pass that creates
them), ``floor`` stores 80 calls of 250 new keys. The figure is
evalShaCommand's inclusive instructions (Ir) divided by the keys it saw,
loading passes included; needs valgrind and callgrind_annotate.

    python benchmarks/redis_batch_callgrind.py --other /work/wt-r4-base
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCHES = 20
FLOOR_SCRIPT = """
local now = redis.call('TIME')
local at = now[1] * 1000 + 1000
for k = 1, #KEYS do
  redis.call('SET', KEYS[k], 'g 1700000000000000', 'PXAT', at)
end
return 1
"""
# Keys each driver sends to EVALSHA, loading passes included.
KEYS = {"fresh": (BATCHES + 1) * 1000, "known": (BATCHES + 4) * 1000, "floor": 80 * 250}
EVALSHA = re.compile(r"^\s*([\d,]+) .*:evalShaCommand ", re.M)


def drive(kind: str, port: int) -> None:
    """`drive` sends one variant's commands to the server at ``port``."""
    import redis

    connection = redis.Redis(host="127.0.0.1", port=port)
    if kind == "floor":
        sha = connection.script_load(FLOOR_SCRIPT)
        for call in range(80):
            # As long as ratefuse's keys: prefix, 32 hex digits, suffix.
            keys = [
                b"ratefuse:{%032d}:gcra:v2" % (call * 1000 + key) for key in range(250)
            ]
            connection.evalsha(sha, len(keys), *keys)
        return
    from ratefuse import Rate
    from ratefuse.redis import RedisBackend, RedisLimiter

    backend = RedisBackend(connection, timeout=120.0)
    if kind == "fresh":
        limiter = RedisLimiter("1000000/s", backend=backend, name="fresh")
        for batch in range(BATCHES + 1):
            limiter.decide_many([f"user-{batch}-{key}" for key in range(1000)])
    else:
        limiter = RedisLimiter(Rate(1, burst=10**6), backend=backend, name="known")
        pool = [[f"user-{batch}-{key}" for key in range(1000)] for batch in range(4)]
        for batch in range(BATCHES + 4):
            limiter.decide_many(pool[batch % 4])
    if limiter.stats().fallbacks:
        raise SystemExit(f"{kind}: Redis did not answer every decision")
    backend.close()


def free_port() -> int:
    """`free_port` is a loopback port nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def measure(kind: str, tree: Path) -> float:
    """`measure` is the server's instructions per key of ``kind`` driven
    by the checkout at ``tree``."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ratefuse-callgrind-") as directory:
        output = Path(directory) / "callgrind.out"
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}",
             "redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while (
                subprocess.run(
                    ["redis-cli", "-p", str(port), "ping"], capture_output=True
                ).stdout.strip()
                != b"PONG"
            ):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("redis-server under valgrind did not start")
                time.sleep(0.2)
            subprocess.run(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--drive",
                    kind,
                    str(port),
                ],
                env=dict(os.environ, PYTHONPATH=str(tree / "src")),
                cwd=tree,
                check=True,
            )
            subprocess.run(
                ["redis-cli", "-p", str(port), "shutdown", "nosave"],
                capture_output=True,
            )
            server.wait(timeout=120)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        annotated = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", str(output)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    found = EVALSHA.search(annotated)
    if found is None:
        raise SystemExit("callgrind_annotate shows no evalShaCommand")
    return int(found.group(1).replace(",", "")) / KEYS[kind]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, help="another checkout (required)")
    parser.add_argument("--drive", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.drive:
        drive(options.drive[0], int(options.drive[1]))
        return
    if options.other is None:
        parser.error("--other is required")
    floor = measure("floor", ROOT)
    print(f"floor (SET PXAT only)   {floor:9,.0f} Ir per key")
    for kind in ("fresh", "known"):
        for label, tree in (("this", ROOT), ("other", options.other.resolve())):
            per_key = measure(kind, tree)
            print(f"{kind + '@' + label:<24}{per_key:9,.0f} Ir per key, "
                  f"{per_key / floor:.2f}x the floor")  # fmt: skip


if __name__ == "__main__":
    main()
