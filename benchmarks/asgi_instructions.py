"""Instructions the uvicorn server process spends per request, for each app of
``ratefuse bench asgi`` (plain, middleware, all-headers).

Wall-clock requests/s on a shared 2-vCPU VM moves by tens of percent between
neighbouring runs, more than the 5% this is meant to resolve. Instruction
counts do not: the server runs under valgrind's callgrind, is warmed up with
200 keep-alive requests, its counters are zeroed, it serves ``N`` more, and
the counters are dumped. The figure is user-space instructions per request
(the kernel's socket work, the same for every variant, is not counted).

    python benchmarks/asgi_instructions.py [N] [h11|httptools]

Needs valgrind (Debian's ``valgrind``), starlette and uvicorn.
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"
# The variants and the request are those of ``ratefuse bench asgi``; the
# script runs from a checkout, so the package comes from its src.
from checkout import use_checkout  # noqa: E402

use_checkout()

from ratefuse.bench.asgi_server import VARIANTS  # noqa: E402
from ratefuse.bench.loadgen import REQUEST  # noqa: E402

WARM_UP = 200


def drive(port: int, count: int) -> bytes:
    """`drive` sends ``count`` requests on one keep-alive connection, one at
    a time, and returns the head of the last response."""
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        head = b""
        for _ in range(count):
            connection.sendall(REQUEST)
            while True:
                head, separator, rest = buffer.partition(b"\r\n\r\n")
                if separator:
                    length = content_length(head)
                    if len(rest) >= length:
                        buffer = rest[length:]
                        break
                buffer += connection.recv(65536)
    return head


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def wait_for(server: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 120  # python under valgrind starts slowly
    while True:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return
        except OSError:
            if server.poll() is not None:
                raise RuntimeError(
                    f"the server exited with status {server.returncode} "
                    "(is the HTTP implementation installed?)"
                ) from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def instructions_per_request(variant: str, requests: int, http: str) -> float:
    """`instructions_per_request` runs ``variant``'s server under callgrind
    and counts the instructions of ``requests`` requests after a warm-up."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as scratch:
        out = os.path.join(scratch, "callgrind.%p")
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "ratefuse.bench.asgi_server",
            variant,
            http,
        ]
        server = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            wait_for(server, port)
            drive(port, WARM_UP)
            control = ["callgrind_control", "-z", str(server.pid)]
            subprocess.run(control, check=True, capture_output=True)
            drive(port, requests)
            control = ["callgrind_control", "-d", str(server.pid)]
            subprocess.run(control, check=True, capture_output=True)
        finally:
            server.terminate()
            server.wait()
        (dump,) = glob.glob(os.path.join(scratch, "callgrind.*.1"))
        with open(dump) as lines:
            for line in lines:
                if line.startswith(("summary:", "totals:")):
                    return int(line.split()[1]) / requests
    raise RuntimeError(f"no instruction total in {dump}")


def main(argv: list[str]) -> None:
    requests = int(argv[0]) if argv else 1000
    http = argv[1] if len(argv) > 1 else "h11"
    counts = {}
    for variant in VARIANTS:
        counts[variant] = instructions_per_request(variant, requests, http)
        print(
            f"{variant:<12} {counts[variant]:>10.0f} instructions/request", flush=True
        )
    for variant in VARIANTS[1:]:
        added = counts[variant] / counts["plain"] - 1
        print(f"{variant}: {added:+.2%} instructions per request against plain")


if __name__ == "__main__":
    main(sys.argv[1:])
