"""The servers ``ratefuse bench asgi`` measures: a trivial Starlette app,
bare or under :class:`ratefuse.web.RateLimitMiddleware`, served by uvicorn
(one worker) in a process of its own.

``python -m ratefuse.bench.asgi_server VARIANT [HTTP]`` binds a free
127.0.0.1 port, prints it on a line of its own, and serves until SIGTERM;
HTTP is uvicorn's ``http`` option ("auto": httptools if installed, else
h11).
"""

from __future__ import annotations

import socket
import sys
from typing import Any

VARIANTS = ("plain", "middleware", "all-headers")
"""`VARIANTS`: "plain" is the bare app; "middleware" adds the rate limit
with its defaults (a KeyedLimiter keyed by client address, high enough
never to deny, so every request pays for the match, the key and the
decision; headers go on 429s only); "all-headers" is the same with
``headers_on="all"``: the two draft headers on every response."""

NEVER_DENYING_RATE = "1000000000/s"


def make_app(variant: str) -> Any:
    """`make_app` builds the ASGI app of ``variant``."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route as StarletteRoute

    async def hello(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[StarletteRoute("/", hello)])
    if variant == "plain":
        return app
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    from ratefuse.keyed import KeyedLimiter
    from ratefuse.web import Limit, RateLimitMiddleware, Route

    limit = Limit(KeyedLimiter(NEVER_DENYING_RATE))
    routes = [Route("/", limit, match="prefix")]
    if variant == "all-headers":
        return RateLimitMiddleware(app, routes, headers_on="all")
    return RateLimitMiddleware(app, routes)


def main(argv: list[str]) -> None:
    """`main` serves ``argv[0]``'s app (with uvicorn's ``http=argv[1]``,
    default "auto") until terminated."""
    import uvicorn

    app = make_app(argv[0])
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say
    # they are TCP, and without it every response waits for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    http = argv[1] if len(argv) > 1 else "auto"
    config = uvicorn.Config(
        app, http=http, log_level="error", access_log=False, lifespan="off"
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
