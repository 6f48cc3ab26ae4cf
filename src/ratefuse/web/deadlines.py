"""Deadlines at the edges: a request's time budget read by the middleware
and passed on by the httpx guard.

The middleware (ASGI and WSGI) can run the app under
``ratefuse.deadline(seconds)`` with the seconds read from the request:
``deadline_from`` is a header name (its value in seconds, ``"2.5"``, or in
gRPC's form, ``"2500m"``: an integer and one of H M S m u n) or a function
of the request (the ASGI scope, the WSGI environ) returning seconds or
None. An absent or unreadable value sets no deadline. ASGI: the whole app
call runs under it; WSGI: the app call, not the iteration of a streamed
body.

The httpx guard, under a running deadline, refuses at once a request with
no time left (DeadlineExceeded), shortens the request's httpx timeouts to
the time left and, if given a ``deadline_header``, sends the time left in
it (seconds) so that the upstream can bound its own work.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from ratefuse.core.errors import DeadlineExceeded
from ratefuse.engine.deadline import Deadline, remaining

DeadlineFrom = str | Callable[[Any], "float | None"]

# gRPC's timeout units, in seconds.
GRPC_UNITS: Final = {
    "H": 3600.0,
    "M": 60.0,
    "S": 1.0,
    "m": 1e-3,
    "u": 1e-6,
    "n": 1e-9,
}
GRPC_TIMEOUT: Final = re.compile(r"(\d{1,8})([HMSmun])")
# The longest budget a request may set (a day): a larger value is read as
# no deadline rather than an overflow.
MAX_SECONDS: Final = 86_400.0


def parse_timeout(text: str) -> float | None:
    """`parse_timeout` is the seconds ``text`` gives (``"2.5"``, or gRPC's
    ``"2500m"``), or None if it is not a finite number of seconds in
    [0, a day]."""
    text = text.strip()
    match = GRPC_TIMEOUT.fullmatch(text)
    if match is not None:
        return int(match[1]) * GRPC_UNITS[match[2]]
    try:
        seconds = float(text)
    except ValueError:
        return None
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_SECONDS):
        return None
    return seconds


def deadline_reader(source: DeadlineFrom, side: str) -> Callable[[Any], float | None]:
    """`deadline_reader` is what reads a request's budget on ``side``
    ("asgi" or "wsgi"): the header ``source`` parsed by `parse_timeout`, or
    the function ``source``. ValueError for anything else."""
    if callable(source):
        return source
    if not isinstance(source, str) or not source:
        raise ValueError(
            f"deadline_from must be a header name or a function, got {source!r}"
        )
    if side == "asgi":
        wanted = source.lower().encode("latin-1")

        def from_scope(scope: MutableMapping[str, Any]) -> float | None:
            for name, value in scope.get("headers", ()):
                if name == wanted:
                    return parse_timeout(value.decode("latin-1"))
            return None

        return from_scope
    key = "HTTP_" + source.upper().replace("-", "_")

    def from_environ(environ: dict[str, Any]) -> float | None:
        value = environ.get(key)
        return None if value is None else parse_timeout(value)

    return from_environ


def _budget(read: Callable[[Any], float | None], request: Any) -> Deadline | None:
    seconds = read(request)
    if seconds is None:
        return None
    return Deadline(min(max(float(seconds), 0.0), MAX_SECONDS))


def with_deadline(app: Any, read: Callable[[Any], float | None], side: str) -> Any:
    """`with_deadline` is ``app`` (ASGI or WSGI, by ``side``) run under the
    deadline ``read`` finds in each request, if any."""
    if side == "asgi":

        async def asgi_app(
            scope: MutableMapping[str, Any],
            receive: Callable[[], Awaitable[Any]],
            send: Callable[[Any], Awaitable[None]],
        ) -> None:
            budget = _budget(read, scope) if scope["type"] == "http" else None
            if budget is None:
                await app(scope, receive, send)
                return
            with budget:
                await app(scope, receive, send)

        return asgi_app

    def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        budget = _budget(read, environ)
        if budget is None:
            return app(environ, start_response)  # type: ignore[no-any-return]
        with budget:
            return app(environ, start_response)  # type: ignore[no-any-return]

    return wsgi_app


def bound_request(request: Any, header: str | None) -> None:
    """`bound_request` fits an httpx ``request`` to the running deadline:
    DeadlineExceeded if no time is left, its timeouts cut to the time
    left, and the time left in ``header`` (if given). Nothing without a
    deadline."""
    left = remaining()
    if left is None:
        return
    if left <= 0.0:
        raise DeadlineExceeded("request", None, 0.0)
    timeouts = dict(request.extensions.get("timeout", {}))
    for phase in ("connect", "read", "write", "pool"):
        current = timeouts.get(phase)
        timeouts[phase] = left if current is None else min(current, left)
    request.extensions["timeout"] = timeouts
    if header is not None:
        request.headers[header] = f"{left:.3f}"
