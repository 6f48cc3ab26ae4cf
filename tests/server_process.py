"""A real server process for the tests, acted on by its PID.

`ServerProcess` is what `redis_servers.RedisServer` (and its sentinel) and
`etcd_servers.EtcdServer` share: a temporary directory of its own, the
start that waits until the server answers (and stops it if it dies or does
not answer in time), and `kill`, `pause`, `resume` and `stop` by PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


class ServerProcess:
    """`ServerProcess` is one server process of ``binary`` with its files
    in a new temporary directory named ``prefix``...; `process` is None
    until `launch`."""

    def __init__(self, binary: str, prefix: str) -> None:
        self.binary = binary
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        self.process: subprocess.Popen[bytes] | None = None

    def launch(
        self,
        args: list[str],
        ready: Callable[[], bool],
        name: str,
        timeout: float,
        **popen: Any,
    ) -> None:
        """`launch` starts ``args`` and waits until ``ready()``; if the
        process dies or ``timeout`` seconds pass first, it stops it and
        raises RuntimeError naming ``name``."""
        self.process = subprocess.Popen(args, **popen)
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{name} did not start")
            time.sleep(0.01)

    @property
    def pid(self) -> int:
        """`pid` is the running server's process id."""
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """`kill` kills the server (SIGKILL) and reaps it; its files stay."""
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            self.process = None

    def pause(self) -> None:
        """`pause` stops the server process (SIGSTOP): it accepts nothing."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """`resume` continues a paused server (SIGCONT)."""
        os.kill(self.pid, signal.SIGCONT)

    def stop(self) -> None:
        """`stop` terminates the server (SIGCONT first, in case it is
        paused; SIGKILL after 10 s) and removes its directory."""
        if self.process is not None:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGCONT)
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.kill()
            self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
