"""``ratefuse bench asgi``: what RateLimitMiddleware costs a trivial
Starlette app, in requests per second on loopback.

The servers (see :mod:`.asgi_server`) run at once, each a uvicorn process
with one worker; the load generator (wrk if installed, else
:mod:`.loadgen` in a process of its own) drives one of them at a time, in
interleaved repeats whose order rotates, so drift of a shared machine
affects them alike.

Two figures per run: the requests/s the load generator saw, and the
server's CPU time per request (from /proc, user + system). On a machine
shared with other work the first moves with everyone else's load; the
second is what one worker core can serve, 1/cpu per request, and moves
far less. Each variant's cost is given by both: 1 - variant/plain of the
median requests/s, and of the median capacity (1e6 / CPU us per request),
with the spread of the per-repeat ratios. Then the same two apps
are timed in process, without sockets (:mod:`.asgi_inprocess`): the
microseconds the middleware itself adds to a request.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ratefuse.bench.asgi_server import VARIANTS
from ratefuse.bench.progress import Progress

DEFAULT_CONNECTIONS = 32
_WRK_COUNT = re.compile(rb"(\d+) requests in ([0-9.]+)(m?s)")
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class AsgiFigures:
    """`AsgiFigures` are one variant's figures over the repeats:
    ``rates`` (requests/s seen by the load generator) and ``cpu_us`` (the
    server's CPU microseconds per request; empty without /proc)."""

    variant: str
    rates: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)


def _child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def _start(variant: str, http: str) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "ratefuse.bench.asgi_server", variant, http],
        stdout=subprocess.PIPE,
        env=_child_env(),
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.strip().isdigit():
        process.kill()
        process.wait()
        raise RuntimeError(
            f"the {variant} server did not start (it needs starlette and uvicorn)"
        )
    return process, int(line)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


def cpu_seconds(pid: int) -> float | None:
    """`cpu_seconds` is the user + system CPU time of ``pid`` (None
    without /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # Fields after the ")" that closes the command name; utime, stime are
    # the 14th and 15th fields of the line.
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_SECOND


def load(port: int, seconds: float, connections: int, tool: str) -> tuple[int, float]:
    """`load` drives 127.0.0.1:``port`` for ``seconds`` and returns the
    requests completed and the seconds they took."""
    if tool == "wrk":
        output = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{max(1, math.ceil(seconds))}s",  # whole seconds only
                f"http://127.0.0.1:{port}/",
            ],
            capture_output=True,
            check=True,
        ).stdout
        found = _WRK_COUNT.search(output)
        if found is None:
            raise RuntimeError(f"wrk printed no request count: {output!r}")
        elapsed = float(found.group(2)) / (1000 if found.group(3) == b"ms" else 1)
        return int(found.group(1)), elapsed
    output = subprocess.run(
        [
            sys.executable,
            "-m",
            "ratefuse.bench.loadgen",
            str(port),
            str(seconds),
            str(connections),
        ],
        capture_output=True,
        check=True,
        env=_child_env(),
    ).stdout
    count, seconds_taken = output.split()
    return int(count), float(seconds_taken)


def measure(
    repeats: int,
    seconds: float,
    connections: int,
    tool: str,
    warm_up: bool = True,
    http: str = "auto",
    variants: tuple[str, ...] = VARIANTS,
) -> list[AsgiFigures]:
    """`measure` runs each of ``variants``' servers (VARIANTS, "plain"
    first) and interleaves ``repeats`` runs of each, the order rotating
    from repeat to repeat (after one warm-up run each, not counted, if
    ``warm_up``)."""
    servers = {variant: _start(variant, http) for variant in variants}
    figures = {variant: AsgiFigures(variant) for variant in variants}
    progress = Progress("asgi")
    try:
        for variant in variants if warm_up else ():
            load(servers[variant][1], min(seconds, 1.0), connections, tool)
        for repeat in range(repeats):
            shift = repeat % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                process, port = servers[variant]
                cpu_before = cpu_seconds(process.pid)
                count, elapsed = load(port, seconds, connections, tool)
                cpu_after = cpu_seconds(process.pid)
                figures[variant].rates.append(count / elapsed)
                if cpu_before is not None and cpu_after is not None and count:
                    figures[variant].cpu_us.append(
                        1e6 * (cpu_after - cpu_before) / count
                    )
            progress.repeats(repeat + 1, repeats)
    finally:
        for process, _ in servers.values():
            _stop(process)
    return [figures[variant] for variant in variants]


def _cost(plain: list[float], middleware: list[float]) -> str:
    # The middleware's cost as a share of the plain app's figure, with the
    # spread of the per-repeat ratios (repeats are interleaved pairs).
    ratios = [m / p for m, p in zip(middleware, plain, strict=True)]
    median_cost = 1 - statistics.median(middleware) / statistics.median(plain)
    return (
        f"{100 * median_cost:.1f}% (per-repeat pairs: "
        f"{100 * (1 - max(ratios)):.1f}% to {100 * (1 - min(ratios)):.1f}%)"
    )


def report(
    figures: list[AsgiFigures], tool: str, connections: int, http: str = "auto"
) -> list[str]:
    """`report` renders the table and each variant's cost against plain."""
    plain = figures[0]
    lines = [
        f"trivial Starlette app, uvicorn 1 worker (http={http}), {tool} with "
        f"{connections} connections, {len(plain.rates)} interleaved repeats",
        f"{'variant':<12} {'req/s median':>13} {'min':>8} {'max':>8}"
        f" {'server CPU us/req':>18} {'min':>7} {'max':>7}",
    ]
    for figure in figures:
        cpu = figure.cpu_us or [math.nan]
        lines.append(
            f"{figure.variant:<12} {statistics.median(figure.rates):>13.0f} "
            f"{min(figure.rates):>8.0f} {max(figure.rates):>8.0f}"
            f" {statistics.median(cpu):>18.1f} {min(cpu):>7.1f} {max(cpu):>7.1f}"
        )
    for figure in figures[1:]:
        lines.append(
            f"{figure.variant} cost, req/s: {_cost(plain.rates, figure.rates)}"
        )
        if plain.cpu_us and figure.cpu_us:
            lines.append(
                f"{figure.variant} cost, req/s per server core (1e6 / CPU us per "
                "request): "
                + _cost(
                    [1e6 / cpu for cpu in plain.cpu_us],
                    [1e6 / cpu for cpu in figure.cpu_us],
                )
            )
    return lines


def select_variants(only: list[str]) -> tuple[str, ...]:
    """`select_variants` is the variants whose name contains a text of
    ``only`` (all when empty), "plain" always first: every cost is measured
    against it. Exits with a message when ``only`` matches no variant."""
    if not only:
        return VARIANTS
    chosen = [v for v in VARIANTS[1:] if any(text in v for text in only)]
    if not chosen and not any(text in VARIANTS[0] for text in only):
        raise SystemExit(
            f"no asgi variant matches --only {' '.join(only)} "
            f"(variants: {', '.join(VARIANTS)})"
        )
    return (VARIANTS[0], *chosen)


def run(
    quick: bool,
    repeats: int | None,
    seconds: float | None,
    connections: int,
    json_path: Path | None,
    http: str = "auto",
    variants: tuple[str, ...] = VARIANTS,
) -> int:
    """`run` executes ``ratefuse bench asgi`` on ``variants`` (see
    `select_variants`) and returns the exit status."""
    tool = "wrk" if shutil.which("wrk") else "python load generator"
    repeats = repeats or (2 if quick else 7)
    seconds = seconds or (0.5 if quick else 5.0)
    figures = measure(repeats, seconds, connections, tool, not quick, http, variants)
    lines = report(figures, tool, connections, http)
    from ratefuse.bench import asgi_inprocess

    in_process = asgi_inprocess.measure(repeats, 2000 if quick else 20000, variants)
    lines += asgi_inprocess.report(in_process)
    print("\n".join(lines))
    if json_path is not None:
        document = {
            "tool": tool,
            "connections": connections,
            "seconds": seconds,
            "http": http,
            "figures": [asdict(figure) for figure in figures],
            "in_process_cpu_us": in_process,
        }
        json_path.write_text(json.dumps(document, indent=2))
    return 0
