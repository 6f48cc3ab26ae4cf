"""A small HTTP/1.1 load generator, for machines without wrk.

``python -m ratefuse.bench.loadgen PORT SECONDS CONNECTIONS`` keeps
CONNECTIONS keep-alive connections to 127.0.0.1:PORT busy with ``GET /``
(one request in flight on each) for SECONDS and prints the requests
completed and the seconds they took. It runs in a process of its own, so
it competes with the server for CPU the way wrk does, only more
expensively: its figures are lower bounds of what the server can do.
"""

from __future__ import annotations

import asyncio
import sys
import time

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def _connection(port: int, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            counts[0] += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def drive(port: int, seconds: float, connections: int) -> tuple[int, float]:
    """`drive` loads the server for ``seconds``: (requests, seconds taken)."""
    counts = [0]
    started = time.perf_counter()
    deadline = started + seconds
    await asyncio.gather(
        *(_connection(port, deadline, counts) for _ in range(connections))
    )
    return counts[0], time.perf_counter() - started


def main(argv: list[str]) -> None:
    """`main` prints the requests and seconds of one run."""
    port, seconds, connections = int(argv[0]), float(argv[1]), int(argv[2])
    count, elapsed = asyncio.run(drive(port, seconds, connections))
    print(count, f"{elapsed:.6f}")


if __name__ == "__main__":
    main(sys.argv[1:])
