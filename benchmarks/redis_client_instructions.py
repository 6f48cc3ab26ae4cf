"""The client's instructions per Redis decision (callgrind), for this
checkout and optionally another: a sequential try_acquire, and a key of
decide_many over 1,000 new keys, beside redis-py's EVALSHA of a trivial
script and of the minimal stateful script.

Wall time on a shared machine moves by 2x between runs; the instructions
the client process executes do not. Each case runs in its own Python
process under ``valgrind --tool=callgrind``, against one redis-server
started here (not under valgrind); only the measured loop is collected
(``--toggle-collect`` on the C function of ``functools.reduce``, which
drives it, after a warm-up outside it). User-space instructions only:
the kernel's share of a round trip (send, recv, select) is not counted.

    python benchmarks/redis_client_instructions.py [--other /work/main]
        [--calls 2000] [--batches 10] [--algorithm gcra]
        [--only trivial|minimal|try_acquire|decide_many|ids]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The cases, and whether a checkout's ratefuse drives them.
CASES = {
    "trivial evalsha (redis-py)": False,
    "minimal evalsha (redis-py)": False,
    "try_acquire": True,
    "decide_many, per key": True,
    "ids decide_many (numpy int64), per key": True,
}
TOTAL = re.compile(r"Collected\s*:\s*([\d,]+)")
BATCH = 1000


def drive(case: str, port: int, calls: int, batches: int, algorithm: str) -> None:
    """`drive` runs ``case`` against the server at ``port``: a warm-up,
    then the measured loop inside ``functools.reduce``."""
    import functools

    import redis

    connection = redis.Redis(host="127.0.0.1", port=port)
    if case.startswith(("trivial", "minimal")):
        from ratefuse.bench.redis_server_time import MINIMAL_SCRIPT

        trivial = case.startswith("trivial")
        sha = connection.script_load("return 1" if trivial else MINIMAL_SCRIPT)
        evalsha = connection.evalsha
        keys = () if trivial else ("bench-client-minimal",)

        def step(_: object, __: int) -> None:
            evalsha(sha, len(keys), *keys)

        rounds = calls
    else:
        from ratefuse.redis import RedisBackend, RedisLimiter

        backend = RedisBackend(connection, timeout=120.0)
        limiter = RedisLimiter(
            "1000000/s", algorithm, backend=backend, name=f"client-{os.getpid()}"
        )
        if case == "try_acquire":
            try_acquire = limiter.try_acquire

            def step(_: object, __: int) -> None:
                try_acquire("user")

            rounds = calls
        else:
            import numpy

            # New keys each batch: str as benchmarks/redis_batch_versus.py
            # makes them, or numpy int64 ids.
            batches_of_keys = [
                numpy.arange(index * BATCH, (index + 1) * BATCH, dtype=numpy.int64)
                if case.startswith("ids")
                else [f"user-{index}-{key}" for key in range(BATCH)]
                for index in range(batches + 1)
            ]
            decide_many = limiter.decide_many

            def step(_: object, index: int) -> None:
                decide_many(batches_of_keys[index + 1])

            rounds = batches
    for index in range(min(rounds, 200)):
        step(None, -1 if "decide_many" in case else index)
    functools.reduce(step, range(rounds), None)


def measure(
    case: str, tree: Path, port: int, calls: int, batches: int, algorithm: str
) -> float:
    """`measure` is the client's instructions per decision of ``case``,
    with ratefuse from the checkout at ``tree``."""
    path = f"{tree / 'src'}{os.pathsep}{ROOT / 'src'}"
    with tempfile.TemporaryDirectory(prefix="ratefuse-client-ir-") as directory:
        output = Path(directory) / "callgrind.out"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={output}",
             "--collect-atstart=no", "--toggle-collect=functools_reduce",
             sys.executable, str(Path(__file__).resolve()), "--drive", case,
             str(port), str(calls), str(batches), algorithm],
            env=dict(os.environ, PYTHONPATH=path),
            cwd=tree,
            capture_output=True,
            text=True,
        )  # fmt: skip
        if done.returncode:
            raise SystemExit(f"{case} failed:\n{done.stderr[-2000:]}")
        found = TOTAL.search(done.stderr)
        if found is None:
            raise SystemExit(f"callgrind reported no total for {case}")
    decisions = batches * BATCH if "decide_many" in case else calls
    return int(found.group(1).replace(",", "")) / decisions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--other", type=Path, help="another checkout to compare")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--algorithm", default="gcra")
    parser.add_argument(
        "--only",
        action="append",
        choices=[case.split()[0].rstrip(",") for case in CASES],
        help="run only these cases (repeatable)",
    )
    parser.add_argument("--drive", nargs=5, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.drive:
        case, port, calls, batches, algorithm = options.drive
        drive(case, int(port), int(calls), int(batches), algorithm)
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from redis_servers import RedisServer

    trees = [("this", ROOT)]
    if options.other is not None:
        trees.append(("other", options.other.resolve()))
    server = RedisServer().start()
    try:
        print(f"client Ir per decision, {options.algorithm}, callgrind", flush=True)
        for case, checkout in CASES.items():
            if options.only and case.split()[0].rstrip(",") not in options.only:
                continue
            for label, tree in trees if checkout else [("", ROOT)]:
                per = measure(
                    case,
                    tree,
                    server.port,
                    options.calls,
                    options.batches,
                    options.algorithm,
                )
                name = f"{case} @{label}" if label else case
                print(f"  {name:<46}{per:10,.0f}", flush=True)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
