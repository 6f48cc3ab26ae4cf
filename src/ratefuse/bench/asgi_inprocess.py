"""The middleware's own cost, without sockets: CPU microseconds per request
of the same two apps as ``ratefuse bench asgi``, called in process.

A loopback run measures the whole stack (the HTTP parser, the event loop,
the kernel) and, on a shared machine, everyone else's load; this one
measures only what the middleware's own code adds to a Starlette request
(not the server's work of sending its headers), in the process's own CPU
time (``time.process_time``), with the two apps
interleaved in alternating order.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from ratefuse.bench.asgi_server import VARIANTS, make_app

_SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "root_path": "",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: Any) -> None:
    return None


async def _cpu_us_per_request(app: Any, requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        await app(dict(_SCOPE), _receive, _send)
    return 1e6 * (time.process_time() - started) / requests


def measure(
    repeats: int, requests: int, variants: tuple[str, ...] = VARIANTS
) -> dict[str, list[float]]:
    """`measure` returns each of ``variants``' CPU us per request over
    ``repeats`` interleaved runs of ``requests`` requests."""
    apps = {variant: make_app(variant) for variant in variants}
    runs: dict[str, list[float]] = {variant: [] for variant in variants}

    async def interleave() -> None:
        for variant in variants:  # warm-up
            await _cpu_us_per_request(apps[variant], requests // 4 or 1)
        for repeat in range(repeats):
            shift = repeat % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                runs[variant].append(await _cpu_us_per_request(apps[variant], requests))

    asyncio.run(interleave())
    return runs


def report(runs: dict[str, list[float]]) -> list[str]:
    """`report` renders the in-process figures."""
    plain = runs["plain"]
    lines = [
        f"in process (no sockets), {len(plain)} interleaved repeats:",
        f"{'variant':<12} {'CPU us/req median':>18} {'min':>7} {'max':>7}",
    ]
    for variant, values in runs.items():
        lines.append(
            f"{variant:<12} {statistics.median(values):>18.2f} "
            f"{min(values):>7.2f} {max(values):>7.2f}"
        )
    for variant, values in runs.items():
        if variant == "plain":
            continue
        added = [m - p for m, p in zip(values, plain, strict=True)]
        lines.append(
            f"{variant} adds {statistics.median(added):.2f} us per request "
            f"(per-repeat pairs: {min(added):.2f} to {max(added):.2f})"
        )
    return lines
