"""Instructions per gRPC call, server side and client side, with and
without the interceptors (the variants of ``ratefuse.bench.grpc_server``).

As ``asgi_instructions.py`` does for the ASGI middleware: wall-clock time
on a shared VM moves by more than the few percent this resolves, so the
process under test runs under valgrind's callgrind. Server: a grpc.aio
server is warmed up with 200 calls, its counters are zeroed, it serves
``N`` more, and the counters are dumped. Client: a grpc.aio client process
makes ``WARM`` calls in one run and ``WARM + N`` in another; the
difference over ``N`` is its cost per call (start-up cancels out). The
figures are user-space instructions (the kernel's socket work is not
counted).

    python benchmarks/grpc_instructions.py [N] [MODE ...] [--repeat R]

MODE is ``server``, ``client`` (the default: both),
``client-channel`` or ``client-sync``. A client mode measures its variants
``R`` times (default 1), interleaved, and reports each figure's median with
the range over the repeats: the poller threads' share moves by a few
thousand instructions per call from run to run, the main thread's by a
few hundred.

``client`` compares the grpc.aio client interceptor with the bare channel;
``client-channel`` compares `ratefuse.grpc.GuardedAioChannel` (a CLOSED
breaker, and the floor: the wrapper with no breaker) with it;
``client-sync`` compares the sync ClientInterceptor (no breaker; a CLOSED
breaker) with a bare sync channel.

Needs valgrind (Debian's ``valgrind``) and grpcio.
"""

from __future__ import annotations

import asyncio
import glob
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
from checkout import use_checkout  # noqa: E402

use_checkout()

from asgi_instructions import wait_for  # noqa: E402
from ratefuse.bench.grpc_server import (  # noqa: E402
    SERVER_VARIANTS,
    call_many,
    make_channel,
)

WARM_UP = 200
# The client variants each client mode compares, the bare one first, and
# the (variant, baseline) pairs it reports besides each against the bare.
CLIENT_MODES = {
    "client": (("plain", "interceptor", "breaker"), (("breaker", "interceptor"),)),
    "client-channel": (
        ("plain", "channel-floor", "channel"),
        (("channel", "channel-floor"),),
    ),
    "client-sync": (
        ("sync-plain", "sync-interceptor", "sync-breaker"),
        (("sync-breaker", "sync-interceptor"),),
    ),
}


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    return env


def _callgrind(arguments: list[str], out: str, *options: str) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        *options,
        sys.executable,
        "-m",
        "ratefuse.bench.grpc_server",
        *arguments,
    ]


def _total(dump: str) -> int:
    with open(dump) as lines:
        for line in lines:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no instruction total in {dump}")


def _drive(port: int, calls: int) -> None:
    async def run() -> None:
        async with make_channel("plain", f"127.0.0.1:{port}") as channel:
            await call_many(channel, calls)

    asyncio.run(run())


def server_instructions(variant: str, calls: int) -> float:
    """`server_instructions` runs ``variant``'s server under callgrind and
    counts the instructions of ``calls`` calls after a warm-up."""
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "callgrind.%p")
        server = subprocess.Popen(
            _callgrind([variant], out),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_env(),
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            wait_for(server, port)  # type: ignore[arg-type]
            _drive(port, WARM_UP)
            control = ["callgrind_control", "-z", str(server.pid)]
            subprocess.run(control, check=True, capture_output=True)
            _drive(port, calls)
            control = ["callgrind_control", "-d", str(server.pid)]
            subprocess.run(control, check=True, capture_output=True)
        finally:
            server.terminate()
            server.wait()
        (dump,) = glob.glob(os.path.join(scratch, "callgrind.*.1"))
        return _total(dump) / calls


def client_instructions(variant: str, port: int, calls: int) -> tuple[float, float]:
    """`client_instructions` is the instructions per call of ``variant``'s
    client: a run of WARM_UP + ``calls`` calls less a run of WARM_UP, in
    all threads and in the main thread alone (where the caller's code and
    ratefuse's run; grpc's poller threads add work that varies with how
    long the run takes, so with the machine's load)."""
    totals, mains = [], []
    for count in (WARM_UP, WARM_UP + calls):
        with tempfile.TemporaryDirectory() as scratch:
            out = os.path.join(scratch, "callgrind.out")
            arguments = ["client", variant, str(port), str(count)]
            subprocess.run(
                _callgrind(arguments, out, "--separate-threads=yes"),
                check=True,
                capture_output=True,
                env=_env(),
            )
            dumps = sorted(glob.glob(f"{out}-*"))
            totals.append(sum(_total(dump) for dump in dumps))
            mains.append(_total(dumps[0]))
    return (totals[1] - totals[0]) / calls, (mains[1] - mains[0]) / calls


def main(argv: list[str]) -> None:
    repeats = 1
    if "--repeat" in argv:
        at = argv.index("--repeat")
        repeats = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
        if repeats < 1:
            raise SystemExit(f"--repeat must be at least 1, got {repeats}")
    calls = int(argv[0]) if argv else 1000
    sides = argv[1:] or ["server", "client"]
    for side in sides:
        if side != "server" and side not in CLIENT_MODES:
            raise SystemExit(f"unknown mode {side!r}: server or {list(CLIENT_MODES)}")
    if "server" in sides:
        measure_servers(calls)
    for side in sides:
        if side in CLIENT_MODES:
            measure_clients(calls, side, repeats)


def measure_servers(calls: int) -> None:
    """`measure_servers` prints each server variant's instructions per call."""
    servers = {
        variant: server_instructions(variant, calls) for variant in SERVER_VARIANTS
    }
    for variant, count in servers.items():
        print(f"server {variant:<8} {count:>10.0f} instructions/call", flush=True)
    for variant in SERVER_VARIANTS[1:]:
        added = servers[variant] / servers["plain"] - 1
        print(f"server {variant}: {added:+.2%} instructions per call against plain")
    added = servers["limited"] / servers["passthrough"] - 1
    print(f"server limited: {added:+.2%} instructions per call against passthrough")


def measure_clients(calls: int, mode: str = "client", repeats: int = 1) -> None:
    """`measure_clients` prints the instructions per call of each client
    variant of ``mode`` (see `CLIENT_MODES`): medians over ``repeats``
    interleaved runs, with their range when there are several."""
    variants, against = CLIENT_MODES[mode]
    plain_server = subprocess.Popen(
        [sys.executable, "-m", "ratefuse.bench.grpc_server", "plain"],
        stdout=subprocess.PIPE,
        env=_env(),
    )
    runs: dict[str, list[tuple[float, float]]] = {variant: [] for variant in variants}
    try:
        assert plain_server.stdout is not None
        port = int(plain_server.stdout.readline())
        for _ in range(repeats):
            for variant in variants:
                runs[variant].append(client_instructions(variant, port, calls))
    finally:
        plain_server.terminate()
        plain_server.wait()
    for variant, counts in runs.items():
        total = statistics.median(count for count, _ in counts)
        main = statistics.median(main for _, main in counts)
        print(
            f"client {variant:<16} {total:>10.0f} instructions/call "
            f"({main:.0f} in the main thread){_spread([c for c, _ in counts])}",
            flush=True,
        )
    bare = variants[0]
    pairs = [(variant, bare) for variant in variants[1:]] + list(against)
    for variant, baseline in pairs:
        both = list(zip(runs[variant], runs[baseline], strict=True))
        added = [count / base - 1 for (count, _), (base, _) in both]
        mains = [main - base_main for (_, main), (_, base_main) in both]
        base = statistics.median(count for count, _ in runs[baseline])
        main = statistics.median(mains)
        print(
            f"client {variant}: {statistics.median(added):+.2%} instructions per "
            f"call against {baseline}{_range(added, '{:+.2%}')}; main thread "
            f"{main:+.0f}{_range(mains, '{:+.0f}')} ({main / base:+.2%} of "
            f"{baseline}'s total)"
        )


def _spread(counts: list[float]) -> str:
    # The range of a variant's totals over the repeats (nothing for one).
    return _range(counts, "{:.0f}")


def _range(values: list[float], form: str) -> str:
    if len(values) < 2:
        return ""
    low, high = min(values), max(values)
    return f" [{form.format(low)} .. {form.format(high)} over {len(values)}]"


if __name__ == "__main__":
    main(sys.argv[1:])
