"""Servers and a worker for the probe tests: waitress in a thread (the
WSGI server deployments run), and a uvicorn child process whose SIGTERM
drains its probes."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import waitress


@contextlib.contextmanager
def serve_waitress(app: Callable[..., Any]) -> Iterator[str]:
    """`serve_waitress` serves ``app`` with waitress on a free 127.0.0.1
    port and yields its base URL; the server is closed by its own thread
    (closing its sockets from another would break its select loop)."""
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=2)
    stop = threading.Event()

    def run() -> None:
        try:
            while not stop.is_set():
                server.asyncore.loop(timeout=0.01, map=server._map, count=1)
        finally:
            # The listening socket and every connection's, then the workers.
            server.asyncore.close_all(server._map)
            server.task_dispatcher.shutdown()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stop.set()
        thread.join(10)
