"""The liveness and readiness probes of :class:`ratefuse.probes.Probes`
served over HTTP, as one ASGI app and one WSGI app.

Each answers GET and HEAD at ``live_path`` (default ``/livez``) and
``ready_path`` (default ``/readyz``) with the probe's JSON: 200 when ok,
503 otherwise; 404 at any other path, 405 for other methods. Mount them
where the orchestrator can reach them (or serve them on a port of their
own); Kubernetes needs only the status code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Final

from ratefuse.json_endpoint import (
    Answer,
    Receive,
    Route,
    Scope,
    Send,
    WsgiApp,
    serve_asgi,
    wsgi_app,
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


def _checked_paths(live_path: str, ready_path: str) -> None:
    for label, path in (("live_path", live_path), ("ready_path", ready_path)):
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"{label} must be a path starting with '/', got {path!r}")
    if live_path == ready_path:
        raise ValueError(
            f"live_path and ready_path must differ, both are {live_path!r}"
        )


def _body(result: ProbeResult) -> Answer:
    return (200 if result.ok else 503), json.dumps(result.to_dict()).encode()


def _route(probes: Probes, live_path: str, ready_path: str) -> Route:
    # Liveness answers in the loop (no I/O); readiness PINGs backends.
    endpoints: dict[str, tuple[Callable[[], Answer], bool]] = {
        live_path: (lambda: _body(probes.live()), False),
        ready_path: (lambda: _body(probes.ready()), True),
    }
    return endpoints.get


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
        self._route = _route(probes, live_path, ready_path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await serve_asgi(scope, receive, send, self._route, "probes")


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
    return wsgi_app(_route(probes, live_path, ready_path))
