"""The liveness and readiness probes of :class:`ratefuse.probes.Probes`
served over HTTP, as one ASGI app and one WSGI app.

Each answers GET and HEAD at ``live_path`` (default ``/livez``) and
``ready_path`` (default ``/readyz``) with the probe's JSON: 200 when ok,
503 otherwise; 404 at any other path, 405 for other methods. Mount them
where the orchestrator can reach them (or serve them on a port of their
own); Kubernetes needs only the status code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from typing import Any, Final

from ratefuse.health import (
    STATUS_LINES,
    Receive,
    Scope,
    Send,
    StartResponse,
    WsgiApp,
    acknowledge_lifespan,
)
from ratefuse.probes import ProbeResult, Probes

__all__ = [
    "DEFAULT_LIVE_PATH",
    "DEFAULT_READY_PATH",
    "AsgiProbes",
    "asgi_probes_app",
    "wsgi_probes_app",
]

DEFAULT_LIVE_PATH: Final = "/livez"
DEFAULT_READY_PATH: Final = "/readyz"

_NOT_FOUND = b'{"error": "not found"}'
_NOT_ALLOWED = b'{"error": "method not allowed"}'


def _checked_paths(live_path: str, ready_path: str) -> None:
    for label, path in (("live_path", live_path), ("ready_path", ready_path)):
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"{label} must be a path starting with '/', got {path!r}")
    if live_path == ready_path:
        raise ValueError(
            f"live_path and ready_path must differ, both are {live_path!r}"
        )


def _body(result: ProbeResult) -> tuple[int, bytes]:
    return (200 if result.ok else 503), json.dumps(result.to_dict()).encode()


class AsgiProbes:
    """`AsgiProbes` is an ASGI 3 app serving ``probes`` at ``live_path``
    and ``ready_path``. Readiness PINGs backends in the loop's default
    executor, so a slow backend never blocks the loop; liveness answers
    in the loop (no I/O). Lifespan events are acknowledged."""

    def __init__(
        self,
        probes: Probes,
        *,
        live_path: str = DEFAULT_LIVE_PATH,
        ready_path: str = DEFAULT_READY_PATH,
    ) -> None:
        _checked_paths(live_path, ready_path)
        self.probes = probes
        self.live_path = live_path
        self.ready_path = ready_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await acknowledge_lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise ValueError(f"probes serve http, got {scope['type']!r}")
        path, method = scope["path"], scope["method"]
        if path not in (self.live_path, self.ready_path):
            status, body = 404, _NOT_FOUND
        elif method not in ("GET", "HEAD"):
            status, body = 405, _NOT_ALLOWED
        elif path == self.live_path:
            status, body = _body(self.probes.live())
        else:
            loop = asyncio.get_running_loop()
            status, body = _body(await loop.run_in_executor(None, self.probes.ready))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        if status == 405:
            headers.append((b"allow", b"GET, HEAD"))
        start = {"type": "http.response.start", "status": status, "headers": headers}
        await send(start)
        final = b"" if method == "HEAD" else body
        await send({"type": "http.response.body", "body": final})


def asgi_probes_app(
    probes: Probes,
    *,
    live_path: str = DEFAULT_LIVE_PATH,
    ready_path: str = DEFAULT_READY_PATH,
) -> AsgiProbes:
    """`asgi_probes_app` is the ASGI app of ``probes``; see
    :class:`AsgiProbes`."""
    return AsgiProbes(probes, live_path=live_path, ready_path=ready_path)


def wsgi_probes_app(
    probes: Probes,
    *,
    live_path: str = DEFAULT_LIVE_PATH,
    ready_path: str = DEFAULT_READY_PATH,
) -> WsgiApp:
    """`wsgi_probes_app` is a WSGI app serving ``probes`` at ``live_path``
    and ``ready_path`` (PATH_INFO), as :class:`AsgiProbes` does."""
    _checked_paths(live_path, ready_path)
    answer: dict[str, Callable[[], ProbeResult]] = {
        live_path: probes.live,
        ready_path: probes.ready,
    }

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        probe = answer.get(environ.get("PATH_INFO", ""))
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        if probe is None:
            status, body = 404, _NOT_FOUND
        elif method not in ("GET", "HEAD"):
            status, body = 405, _NOT_ALLOWED
            headers.append(("Allow", "GET, HEAD"))
        else:
            status, body = _body(probe())
        headers.append(("Content-Length", str(len(body))))
        start_response(STATUS_LINES[status], headers)
        return [b"" if method == "HEAD" else body]

    return app
