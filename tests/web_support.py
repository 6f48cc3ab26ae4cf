"""Real servers for the integration tests: uvicorn for ASGI apps and
wsgiref for WSGI apps, each in a thread on a free 127.0.0.1 port, stopped
(and their sockets closed) on exit; a manual clock; and the Limits both
middleware tests build on the `impl` fixture's cores."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import uvicorn

from ratefuse import Rate
from ratefuse.rates import build_specs
from ratefuse.web import Limit

TWO_PER_10S = Rate(2, 10.0)  # GCRA: one unit every 5 s, burst 2


class ManualClock:
    """`ManualClock` is a clock in integer ns that moves only when told."""

    def __init__(self, start_ns: int = 1_000_000_000_000) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def advance(self, seconds: float) -> None:
        self.now_ns += round(seconds * 1e9)

    def sleep(self, seconds: float) -> None:
        """`sleep` is time.sleep for this clock: it advances it."""
        self.advance(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.advance(seconds)


def keyed_limit(
    impl: Any, clock: ManualClock, rate: Rate = TWO_PER_10S, **options: Any
) -> Limit:
    """`keyed_limit` is a Limit on a keyed GCRA core of ``impl`` (1000 keys)
    reading ``clock``; ``options`` go to Limit."""
    core = impl.module("engine._keyed").KeyedLimiterCore(
        build_specs([rate], "gcra"), 1000, clock
    )
    return Limit(core, rates=[rate], **options)


def subject_limit(
    impl: Any, clock: ManualClock, rate: Rate = TWO_PER_10S, **options: Any
) -> Limit:
    """`subject_limit` is a Limit on a one-subject GCRA core of ``impl``
    reading ``clock``; ``options`` go to Limit."""
    core = impl.module("engine._subject").LimiterCore(
        build_specs([rate], "gcra"), clock
    )
    return Limit(core, rates=[rate], **options)


@contextlib.contextmanager
def serve_asgi(app: Any, lifespan: str = "off") -> Iterator[str]:
    """`serve_asgi` serves ``app`` with uvicorn and yields its base URL;
    ``lifespan="on"`` runs the app's startup and shutdown."""
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say
    # they are TCP, and without it every response waits for a delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="error", lifespan=lifespan)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        for _ in range(2000):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.005)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadedWSGIServer(WSGIServer):
    # One thread per connection, like a production WSGI server.
    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_one, args=(request, client_address), daemon=True
        )
        thread.start()

    def _serve_one(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)


@contextlib.contextmanager
def serve_wsgi(app: Callable[..., Any]) -> Iterator[str]:
    """`serve_wsgi` serves ``app`` with wsgiref and yields its base URL."""
    server = make_server(
        "127.0.0.1",
        0,
        app,
        server_class=_ThreadedWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def check_headers_go_on_denials_only(client: Any) -> None:
    """`check_headers_go_on_denials_only` checks the default ``headers_on``
    on a route limited to 2/10 s per ``x-api-key`` (the key "alice" is
    fresh): no rate-limit header on the two admitted responses, all of them
    on the 429."""
    api_key = {"x-api-key": "alice"}
    for _ in range(2):
        admitted = client.get("/items/1", headers=api_key)
        assert admitted.status_code == 200
        assert not [name for name in admitted.headers if "ratelimit" in name]
    denied = client.get("/items/1", headers=api_key)
    assert denied.status_code == 429
    assert denied.headers["retry-after"] == "5"
    assert denied.headers["ratelimit-policy"] == '"default";q=2;w=10'
    assert denied.headers["ratelimit"] == '"default";r=0;t=10'
