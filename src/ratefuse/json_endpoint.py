"""The one HTTP shell of the JSON endpoints (health, liveness, readiness)
in ASGI and WSGI: a route from the path to the endpoint's answer, GET and
HEAD only (405 with ``Allow`` otherwise), 404 where no route, JSON bodies
never cached, and an ASGI lifespan acknowledged.

`health` and `probe_apps` differ only in their routes and answers; each
answer is ``(status, body)``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias

Scope: TypeAlias = Mapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Mapping[str, Any]]]
Send: TypeAlias = Callable[[Mapping[str, Any]], Awaitable[None]]
StartResponse: TypeAlias = Callable[[str, list[tuple[str, str]]], object]
WsgiApp: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

Answer: TypeAlias = tuple[int, bytes]
# Finds the endpoint of a path, or None: a function that answers it and
# whether it may block on I/O (under ASGI it then runs in the event loop's
# default executor; one that does not answers in the loop, so that a
# liveness probe never waits for a thread that a slow PING holds).
Route: TypeAlias = Callable[[str], tuple[Callable[[], Answer], bool] | None]

# The WSGI status line of each status the endpoints answer.
STATUS_LINES: Final = {
    200: "200 OK",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    503: "503 Service Unavailable",
}
_NOT_FOUND: Final = (404, b'{"error": "not found"}')
_NOT_ALLOWED: Final = (405, b'{"error": "method not allowed"}')
_METHODS: Final = ("GET", "HEAD")


def _choose(
    path: str, method: str, route: Route
) -> tuple[Answer | Callable[[], Answer], bool]:
    # The answer when it needs no endpoint (404, 405), else the endpoint;
    # and whether it may block.
    endpoint = route(path)
    if endpoint is None:
        return _NOT_FOUND, False
    if method not in _METHODS:
        return _NOT_ALLOWED, False
    return endpoint


async def serve_asgi(
    scope: Scope, receive: Receive, send: Send, route: Route, what: str
) -> None:
    """`serve_asgi` answers one ASGI call with the JSON of ``route``'s
    endpoint (``what`` names the app in the error for a scope that is
    neither http nor lifespan)."""
    if scope["type"] == "lifespan":
        await acknowledge_lifespan(receive, send)
        return
    if scope["type"] != "http":
        raise ValueError(f"{what} serves http, got {scope['type']!r}")
    method = scope["method"]
    chosen, blocks = _choose(scope["path"], method, route)
    if not callable(chosen):
        status, body = chosen
    elif blocks:
        status, body = await asyncio.get_running_loop().run_in_executor(None, chosen)
    else:
        status, body = chosen()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if status == 405:
        headers.append((b"allow", b"GET, HEAD"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    final = b"" if method == "HEAD" else body
    await send({"type": "http.response.body", "body": final})


async def acknowledge_lifespan(receive: Receive, send: Send) -> None:
    """`acknowledge_lifespan` answers an ASGI lifespan scope for an
    endpoint that needs no startup or shutdown work."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def wsgi_app(route: Route) -> WsgiApp:
    """`wsgi_app` is a WSGI app answering each request (PATH_INFO) with the
    JSON of ``route``'s endpoint."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        chosen, _ = _choose(environ.get("PATH_INFO", ""), method, route)
        status, body = chosen() if callable(chosen) else chosen
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
        if status == 405:
            headers.append(("Allow", "GET, HEAD"))
        headers.append(("Content-Length", str(len(body))))
        start_response(STATUS_LINES[status], headers)
        return [b"" if method == "HEAD" else body]

    return app
