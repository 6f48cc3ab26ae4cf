"""Real etcd processes for the etcd config source's tests and benchmark.

`EtcdServer` runs one ``etcd`` (Debian's etcd-server) on free 127.0.0.1
client and peer ports with its data in a temporary directory; `stop`,
`kill` and `start` (again, on the same ports and data) act by PID.
`require_etcd` skips when no etcd binary exists, or fails when
RATEFUSE_REQUIRE_ETCD=1 (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request

import pytest

from redis_servers import free_port
from server_process import ServerProcess

START_TIMEOUT = 20.0


def require_etcd() -> str:
    """`require_etcd` is the etcd path, or skips the test (fails it under
    RATEFUSE_REQUIRE_ETCD=1) when there is none."""
    path = shutil.which("etcd")
    if path is None:
        reason = "etcd is not installed (apt-get install etcd-server)"
        if os.environ.get("RATEFUSE_REQUIRE_ETCD", "") not in ("", "0"):
            pytest.fail(f"RATEFUSE_REQUIRE_ETCD is set but {reason}")
        pytest.skip(reason)
    return path


def healthy(url: str, timeout: float = 0.5) -> bool:
    """`healthy` is true if the etcd at ``url`` answers its /health."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as reply:
            return bool(json.loads(reply.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


class EtcdServer(ServerProcess):
    """`EtcdServer` is one etcd member on 127.0.0.1: clients at `url`."""

    def __init__(self) -> None:
        super().__init__(require_etcd(), "ratefuse-etcd-")
        self.port = free_port()
        self.peer_port = free_port()

    @property
    def url(self) -> str:
        """`url` is the client URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> EtcdServer:
        """`start` starts the member (again, with the same data) and waits
        until it reports healthy."""
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = [
            self.binary,
            "--name", "ratefuse",
            "--data-dir", str(self.directory / "data"),
            "--listen-client-urls", self.url,
            "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"ratefuse={peer}",
        ]  # fmt: skip
        with open(self.directory / "etcd.log", "ab") as log:
            self.launch(
                args,
                lambda: healthy(self.url),
                f"etcd on port {self.port}",
                START_TIMEOUT,
                stdout=log,
                stderr=log,
            )
        return self
