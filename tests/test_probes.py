"""Liveness and readiness probes on real servers (the ASGI app under
uvicorn, the WSGI app under waitress, driven by httpx), draining, and a
real SIGTERM to a uvicorn child process. Backends are in
redis_backend/test_probes_redis.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest

from breaker_support import Boom
from probe_support import serve_waitress
from ratefuse.breaker import State
from ratefuse.config import Registry
from ratefuse.probe_apps import asgi_probes_app, wsgi_probes_app
from ratefuse.probes import Probes, install_sigterm_drain
from redis_servers import free_port
from web_support import serve_asgi

Serve = Callable[[Probes], AbstractContextManager[str]]
HERE = Path(__file__).resolve().parent


def _asgi(probes: Probes) -> AbstractContextManager[str]:
    return serve_asgi(asgi_probes_app(probes), lifespan="on")


def _wsgi(probes: Probes) -> AbstractContextManager[str]:
    return serve_waitress(wsgi_probes_app(probes))


@pytest.fixture(params=[_asgi, _wsgi], ids=["asgi", "wsgi"])
def serve(request: pytest.FixtureRequest) -> Serve:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as http:
        yield http


@pytest.fixture
def registry() -> Registry:
    return Registry(
        {
            "limiters": {"api": {"rate": "10/s"}},
            "breakers": {
                "payments": {"minimum_calls": 1, "window_size": 1},
                "search": {"minimum_calls": 1, "window_size": 1},
            },
        },
        clock=lambda: 0,
    )


def trip(registry: Registry, name: str) -> None:
    permit = registry.breaker(name).try_acquire()
    assert permit is not None
    permit.on_error(0.0, Boom())
    assert registry.breaker(name).state is State.OPEN


def test_an_open_downstream_breaker_leaves_the_process_ready(
    serve: Serve, client: httpx.Client, registry: Registry
) -> None:
    with serve(Probes(registry)) as url:
        trip(registry, "payments")
        live, ready = client.get(f"{url}/livez"), client.get(f"{url}/readyz")
        assert (live.status_code, ready.status_code) == (200, 200)
        assert live.json() == {"status": "ok", "checks": {"decide": {"ok": True}}}
        assert ready.json() == {"status": "ok", "checks": {"draining": {"ok": True}}}
        assert ready.headers["cache-control"] == "no-store"
        # The old endpoint's meaning is unchanged: a dashboard, not a probe.
        assert not registry.health().ok


def test_required_breakers_decide_readiness(
    serve: Serve, client: httpx.Client, registry: Registry
) -> None:
    probes = Probes(registry, ready_requires_breakers=["payments"])
    with serve(probes) as url:
        trip(registry, "search")  # not required
        assert client.get(f"{url}/readyz").status_code == 200
        trip(registry, "payments")
        ready = client.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["breaker:payments"] == {
            "ok": False,
            "state": "OPEN",
        }
        assert client.get(f"{url}/livez").status_code == 200
        registry.breaker("payments").disable()
        assert client.get(f"{url}/readyz").status_code == 200


def test_drain_turns_readiness_off_and_leaves_liveness_on(
    serve: Serve, client: httpx.Client, registry: Registry
) -> None:
    probes = Probes(registry)
    with serve(probes) as url:
        assert client.get(f"{url}/readyz").status_code == 200
        probes.drain()
        ready = client.get(f"{url}/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"status": "fail", "checks": {"draining": {"ok": False}}}
        assert client.get(f"{url}/livez").status_code == 200
        assert probes.draining


def test_paths_methods_and_head(serve: Serve, client: httpx.Client) -> None:
    with serve(Probes()) as url:
        assert client.get(f"{url}/health").status_code == 404
        refused = client.post(f"{url}/readyz")
        assert refused.status_code == 405
        assert refused.headers["allow"] == "GET, HEAD"
        head = client.head(f"{url}/livez")
        assert (head.status_code, head.content) == (200, b"")


def test_a_missing_required_breaker_is_not_ready(registry: Registry) -> None:
    probes = Probes(registry, ready_requires_breakers=["gone"])
    result = probes.ready()
    assert not result.ok
    assert result.checks["breaker:gone"] == {"ok": False, "error": "no such breaker"}


def test_breaker_objects_may_be_required(registry: Registry) -> None:
    breaker = registry.breaker("search")
    probes = Probes(ready_requires_breakers=[breaker])
    assert probes.ready().ok
    trip(registry, "search")
    assert probes.ready().checks["breaker:search"]["state"] == "OPEN"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"timeout": 0}, ValueError, "timeout must be finite and > 0 seconds, got 0"),
        ({"timeout": "1"}, ValueError, "timeout must be a number of seconds, got '1'"),
        ({"ready_requires_breakers": [3]}, TypeError, "got 3"),
        ({"ready_requires_breakers": ["db"]}, ValueError, "names 'db'"),
    ],
)
def test_probes_check_their_arguments(
    options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Probes(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"live_path": "livez"}, "live_path must be a path starting with '/'"),
        ({"ready_path": "/livez"}, "must differ, both are '/livez'"),
    ],
)
def test_probe_apps_check_their_paths(options: dict[str, Any], message: str) -> None:
    for make in (asgi_probes_app, wsgi_probes_app):
        with pytest.raises(ValueError, match=message):
            make(Probes(), **options)


def test_install_sigterm_drain_checks_grace() -> None:
    with pytest.raises(ValueError, match="grace must be finite and >= 0 seconds"):
        install_sigterm_drain(Probes(), grace=-1)


def test_uninstall_puts_the_previous_handler_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    drain = install_sigterm_drain(Probes(), grace=1.0)
    assert signal.getsignal(signal.SIGTERM) == drain.handle
    drain.uninstall()
    assert signal.getsignal(signal.SIGTERM) == before


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        done.wait(0.02)
    raise AssertionError("condition not met in time")


def status(client: httpx.Client, url: str) -> int | None:
    try:
        return client.get(url).status_code
    except httpx.TransportError:
        return None


def test_sigterm_drains_then_uvicorn_shuts_down() -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, str(HERE / "probe_worker.py"), str(port), "4"], env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=2.0) as http:
            wait_until(lambda: status(http, f"{base}/readyz") == 200)
            child.send_signal(signal.SIGTERM)
            # Readiness goes off at once, while the process keeps serving.
            wait_until(lambda: status(http, f"{base}/readyz") == 503, timeout=3.0)
            assert status(http, f"{base}/livez") == 200
            assert child.poll() is None
            # After the grace, uvicorn's own SIGTERM handling: it shuts down
            # and re-raises the signal.
            assert child.wait(timeout=60) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_sigterm_without_a_server_ends_the_process_after_the_grace(
    tmp_path: Path,
) -> None:
    script = tmp_path / "drained.py"
    script.write_text(
        "import sys, threading\n"
        "from ratefuse.probes import Probes, install_sigterm_drain\n"
        "probes = Probes()\n"
        "drain = install_sigterm_drain(probes, grace=0.2)\n"
        "print('installed', flush=True)\n"
        "drain.signalled.wait(60)\n"
        "print('draining', probes.draining, probes.ready().ok, probes.live().ok,"
        " flush=True)\n"
        "threading.Event().wait(60)\n"
        "print('not terminated', flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "installed\n"
        child.send_signal(signal.SIGTERM)
        out, _ = child.communicate(timeout=60)
        assert out == "draining True False True\n"
        assert child.returncode == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
