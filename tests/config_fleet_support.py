"""Config sources' servers and fleet processes for the tests and the
propagation benchmark.

`SourceServer` is a real redis-server or etcd on loopback, with what the
tests do to it: a store, a follower's source, a raw write that bypasses the
push's checks (an old or rogue publisher), and a restart (killed, then
started again on the same port: Redis without persistence comes back
empty, etcd with its data). `Worker` is one `config_workers.py` process,
driven over its pipes and killed by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from etcd_servers import EtcdServer
from ratefuse.config import (
    EtcdConfigSource,
    EtcdConfigStore,
    RedisConfigSource,
    RedisConfigStore,
)
from redis_servers import RedisServer

KINDS = ("redis", "etcd")
WORKER = Path(__file__).resolve().parent / "config_workers.py"
# Seconds a process's acknowledgement outlives it in these tests (etcd's
# leases are at least 2 s).
ACK_TTL = 2.0
REPLY_TIMEOUT = 60.0


class SourceServer:
    """`SourceServer` is a started redis-server (``kind`` "redis") or etcd
    ("etcd")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.server: RedisServer | EtcdServer = (
            RedisServer() if kind == "redis" else EtcdServer()
        )

    def start(self) -> SourceServer:
        self.server.start()
        return self

    @property
    def url(self) -> str:
        if isinstance(self.server, RedisServer):
            return f"redis://127.0.0.1:{self.server.port}/0"
        return self.server.url

    def key(self, name: str) -> str:
        """`key` is a store key of the test's own."""
        return f"test:{name}" if self.kind == "redis" else f"/test/{name}"

    def store(self, key: str) -> RedisConfigStore | EtcdConfigStore:
        if self.kind == "redis":
            return RedisConfigStore(self.url, key=key)
        return EtcdConfigStore(self.url, key=key)

    def source(
        self, key: str, member: str, ack_ttl: float = ACK_TTL
    ) -> RedisConfigSource | EtcdConfigSource:
        source_class = RedisConfigSource if self.kind == "redis" else EtcdConfigSource
        return source_class(
            self.url, key=key, member=member, ack_ttl=ack_ttl, retry_interval=0.05
        )

    def write_raw(self, key: str, text: bytes) -> None:
        """`write_raw` writes ``text`` as the next version unchecked, as a
        publisher that skips the checks would."""
        store = self.store(key)
        try:
            current = store.read()
            store.write(text, 0 if current is None else current.version)
        finally:
            store.close()

    def restart(self) -> None:
        """`restart` kills the server and starts it again on its port."""
        self.server.kill()
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


class Worker:
    """`Worker` is one process of the fleet (tests/config_workers.py)."""

    def __init__(self, server: SourceServer, key: str, member: str) -> None:
        self.member = member
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), server.kind, server.url, key, member,
             str(ACK_TTL)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.replies: queue.Queue[Any] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        assert self.reply() == {"ready": True}

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.replies.put(json.loads(line))
        self.replies.put(EOFError(f"worker {self.member} exited"))

    def reply(self, timeout: float = REPLY_TIMEOUT) -> Any:
        """`reply` is the worker's next line."""
        found = self.replies.get(timeout=timeout)
        if isinstance(found, EOFError):
            raise found
        return found

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def ask(self, **command: Any) -> Any:
        self.send(**command)
        return self.reply()

    def close(self) -> None:
        """`close` ends the worker: EOF, then SIGKILL by PID if it lingers."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.kill()
        self._close_pipes()

    def kill(self) -> None:
        """`kill` kills the worker (SIGKILL): it withdraws nothing."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close_pipes()

    def _close_pipes(self) -> None:
        # The process has exited: its stdout ends, so the reader does.
        self._reader.join(timeout=10)
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None and not pipe.closed:
                with contextlib.suppress(OSError):  # a broken pipe to a dead child
                    pipe.close()
