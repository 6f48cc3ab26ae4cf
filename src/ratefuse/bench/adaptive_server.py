"""The real-server check of the adaptive concurrency limit: a uvicorn app
whose handler's latency grows with its in-flight work, driven past its
capacity on loopback by an open-loop httpx client, without and with the
adaptive middleware (``Route(concurrency=AdaptiveLimiter(Vegas()))``).

The server runs in a subprocess (its own GIL). Its handler serves at most
``CAPACITY`` requests at once (the others queue, first come first served)
and each takes ``LATENCY`` seconds of (slept) work, stretched by
``1 + CONTENTION * (n - CAPACITY) / CAPACITY`` when ``n`` requests are
in the handler at its start, beyond the capacity: a queue costs throughput,
as the simulation's contention does. The client sends Poisson arrivals at
``load`` times the capacity and never slows down; a request is good when
it is answered 200 within the deadline (its total time, enforced).

Run: ``python benchmarks/adaptive_server.py`` (or ``ratefuse bench
adaptive --server``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

CAPACITY: Final = 10
LATENCY: Final = 0.2
CONTENTION: Final = 0.5
DEADLINE: Final = 2.0


def app(adaptive: bool) -> Any:
    """`app` is the server's ASGI app: the stretched handler on ``/work``,
    under the adaptive middleware if ``adaptive``."""
    in_handler = [0]
    workers: list[asyncio.Semaphore] = []

    guard: Any = None

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/stats":
            body = repr(None if guard is None else guard.stats()).encode()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
            return
        if not workers:  # made on the server's event loop
            workers.append(asyncio.Semaphore(CAPACITY))
        in_handler[0] += 1
        try:
            async with workers[0]:
                excess = max(0, in_handler[0] - CAPACITY) / CAPACITY
                await asyncio.sleep(LATENCY * (1 + CONTENTION * excess))
        finally:
            in_handler[0] -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    if not adaptive:
        return handler
    from ratefuse import AdaptiveLimiter
    from ratefuse.adaptive import Vegas
    from ratefuse.web import RateLimitMiddleware, Route

    guard = AdaptiveLimiter(Vegas(initial_limit=5, max_limit=200), name="server")
    return RateLimitMiddleware(handler, [Route("/work", concurrency=guard)])


def serve(port: int, adaptive: bool) -> None:
    """`serve` runs the app on 127.0.0.1:``port`` until killed."""
    import uvicorn

    uvicorn.run(app(adaptive), host="127.0.0.1", port=port, log_level="error")


@contextlib.contextmanager
def server(adaptive: bool) -> Iterator[str]:
    """`server` starts the app in a subprocess on a free port and yields its
    URL; the subprocess is stopped by its pid on exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "ratefuse.bench.adaptive_server", "--serve", str(port)]
        + (["--adaptive"] if adaptive else [])
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", port), timeout=0.2),
            ):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the adaptive check's server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        # Killed, not asked to stop: a graceful uvicorn would first finish
        # the requests still queued in its handler.
        process.kill()
        process.wait(10)


@dataclass(frozen=True, slots=True)
class ServerFigures:
    """`ServerFigures` are one run's results: ``goodput`` (200s within the
    deadline per second, as a share of the capacity; `run_server_check`
    reports it as a share of what could be served), ``p50``/``p99``
    (seconds, of the 200s), and the shares of requests ``refused`` (503)
    and ``failed`` (timeouts, errors)."""

    label: str
    sent: int
    goodput: float
    p50: float
    p99: float
    refused: float
    failed: float


async def drive(
    url: str, load: float, duration: float, seed: int = 19
) -> tuple[list[Any], str]:
    """`drive` sends Poisson arrivals at ``load`` times the capacity to
    ``url`` for ``duration`` seconds; returns (sent at, status or None,
    seconds) per request, and the server's ``/stats`` after the run."""
    import httpx

    rng = random.Random(seed)
    rate = load * CAPACITY / LATENCY
    results: list[Any] = []
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=2000)
    async with httpx.AsyncClient(limits=limits, timeout=None) as client:

        async def one() -> None:
            started = time.perf_counter()
            sent = started - start
            try:
                response = await asyncio.wait_for(client.get(f"{url}/work"), DEADLINE)
                status = response.status_code
            except (httpx.HTTPError, asyncio.TimeoutError):
                status = None
            results.append((sent, status, time.perf_counter() - started))

        tasks = []
        start = time.perf_counter()
        due = start
        while due - start < duration:
            due += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        stats = (await client.get(f"{url}/stats")).text
    return results, stats


def figures(
    label: str, results: Sequence[Any], duration: float, warmup: float
) -> ServerFigures:
    """`figures` reduces one run's results, the requests sent in the first
    ``warmup`` seconds left out; goodput counts the good answers that came
    between ``warmup`` and ``duration``."""
    measured = [
        (status, seconds) for sent, status, seconds in results if sent >= warmup
    ]
    ok = sorted(seconds for status, seconds in measured if status == 200)
    good = [
        seconds
        for sent, status, seconds in results
        if status == 200 and seconds <= DEADLINE and warmup <= sent + seconds < duration
    ]
    sent = max(1, len(measured))

    def rank(share: float) -> float:
        return ok[max(0, int(share * len(ok) + 0.999999) - 1)] if ok else float("nan")

    return ServerFigures(
        label=label,
        sent=len(measured),
        goodput=len(good) / (duration - warmup) / (CAPACITY / LATENCY),
        p50=rank(0.5),
        p99=rank(0.99),
        refused=sum(status == 503 for status, _ in measured) / sent,
        failed=sum(status is None for status, _ in measured) / sent,
    )


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.0f}"


def run_server_check(quick: bool = False, load: float = 2.0) -> list[str]:
    """`run_server_check` runs the check without and with the middleware and
    returns its report as Markdown lines."""
    duration, warmup = (4.0, 1.0) if quick else (15.0, 3.0)
    rows = []
    stats = ""
    runs = (
        ("unloaded (0.5x), no limit", False, 0.5),
        ("no limit", False, load),
        ("adaptive (Vegas)", True, load),
    )
    for label, adaptive, offered in runs:
        with server(adaptive) as url:
            results, stats = asyncio.run(drive(url, offered, duration))
        row = figures(label, results, duration, warmup)
        # Goodput is a share of what could be served: the offered rate if
        # below the capacity.
        rows.append(replace(row, goodput=row.goodput / min(1.0, offered)))
    lines = [
        f"real server: capacity {CAPACITY} in flight x {LATENCY * 1e3:g} ms "
        f"({CAPACITY / LATENCY:g} req/s), load {load:g}x, open loop, "
        f"{duration:g} s (the first {warmup:g} s left out), deadline {DEADLINE:g} s",
        "",
        "| server | sent | goodput | p50 ms | p99 ms | refused (503) | failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.label} | {row.sent} | {row.goodput:.0%} | {_ms(row.p50)} "
            f"| {_ms(row.p99)} | {row.refused:.0%} | {row.failed:.0%} |"
        )
    lines += ["", f"the adaptive limit at the end: {stats}"]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """`main` serves (``--serve PORT``) or runs the check."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", type=int, metavar="PORT")
    parser.add_argument("--adaptive", action="store_true")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--load", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.adaptive)
        return 0
    print("\n".join(run_server_check(args.quick, args.load)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
