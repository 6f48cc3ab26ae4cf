"""A service as deployed: uvicorn serving the probes, SIGTERM draining
them for ``grace`` seconds before uvicorn's own shutdown. Run as
``python probe_worker.py PORT GRACE``; the SIGTERM test drives it."""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

from ratefuse.probe_apps import asgi_probes_app
from ratefuse.probes import Probes, install_sigterm_drain

probes = Probes()
probe_app = asgi_probes_app(probes)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # After uvicorn installed its handlers: ours goes first.
                install_sigterm_drain(probes, grace=float(sys.argv[2]))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await probe_app(scope, receive, send)


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="error")
