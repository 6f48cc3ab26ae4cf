"""Real redis-server processes for the Redis tests and benchmarks.

`RedisServer` runs one ``redis-server`` on a free 127.0.0.1 port in its own
temporary directory (no persistence); `RedisClusterServers` runs three
cluster-enabled ones and joins them with ``redis-cli --cluster create``;
`RedisSentinelServers` runs a primary, a replica and a ``redis-sentinel``
watching them. Everything is stopped by PID. `require_redis_server` skips when no
redis-server binary exists, or fails when RATEFUSE_REQUIRE_REDIS=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from typing import Any

import pytest

from server_process import ServerProcess

START_TIMEOUT = 10.0
CLUSTER_TIMEOUT = 30.0


def require_redis_server() -> str:
    """`require_redis_server` is the redis-server path, or skips the test
    (fails it under RATEFUSE_REQUIRE_REDIS=1) when there is none."""
    path = shutil.which("redis-server")
    if path is None or shutil.which("redis-cli") is None:
        reason = "redis-server and redis-cli are not installed"
        if os.environ.get("RATEFUSE_REQUIRE_REDIS", "") not in ("", "0"):
            pytest.fail(f"RATEFUSE_REQUIRE_REDIS is set but {reason}")
        pytest.skip(reason)
    return path


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(cluster: bool = False) -> int:
    """`free_port` is a free loopback port (and, for a cluster node, its bus
    port + 10000 too)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if not cluster:
            return port
        if port + 10000 < 65536 and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def ping(port: int, timeout: float = 0.2) -> bool:
    """`ping` is true if a server answers PING on ``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def command(port: int, *args: str) -> str:
    """`command` runs one redis-cli command against ``port``; its output."""
    result = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    return result.stdout


class RedisServer(ServerProcess):
    """`RedisServer` is one redis-server process on 127.0.0.1:``port``."""

    def __init__(self, cluster: bool = False, extra: tuple[str, ...] = ()) -> None:
        super().__init__(require_redis_server(), "ratefuse-redis-")
        self.cluster = cluster
        self.extra = extra
        self.port = free_port(cluster)

    def start(self) -> RedisServer:
        """`start` starts the server (again, on the same port) and waits
        until it answers PING."""
        args = [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", "redis.log",
        ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000",
            ]  # fmt: skip
        args += self.extra
        self._launch_answering(args, f"redis-server on port {self.port}")
        return self

    def _launch_answering(self, args: list[str], name: str) -> None:
        # Started once it answers PING.
        self.launch(
            args,
            lambda: ping(self.port),
            name,
            START_TIMEOUT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )


class RedisClusterServers:
    """`RedisClusterServers` is a 3-primary Redis Cluster on loopback."""

    def __init__(self) -> None:
        self.nodes: list[RedisServer] = []

    def start(self) -> RedisClusterServers:
        """`start` starts the nodes, creates the cluster and waits until
        every node reports cluster_state:ok with all slots assigned."""
        try:
            for _ in range(3):
                self.nodes.append(RedisServer(cluster=True).start())
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            subprocess.run(
                ["redis-cli", "--cluster", "create", *addresses,
                 "--cluster-replicas", "0", "--cluster-yes"],
                capture_output=True,
                timeout=CLUSTER_TIMEOUT,
                check=True,
            )  # fmt: skip
            deadline = time.monotonic() + CLUSTER_TIMEOUT
            while not all(self._ready(node.port) for node in self.nodes):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster did not become ready")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    @staticmethod
    def _ready(port: int) -> bool:
        info = command(port, "CLUSTER", "INFO")
        return "cluster_state:ok" in info and "cluster_slots_ok:16384" in info

    @property
    def ports(self) -> list[int]:
        """`ports` are the nodes' client ports."""
        return [node.port for node in self.nodes]

    def node_id(self, port: int) -> str:
        """`node_id` is the cluster id of the node on ``port``."""
        return command(port, "CLUSTER", "MYID").strip()

    def stop(self) -> None:
        """`stop` stops every node."""
        for node in self.nodes:
            node.stop()
        self.nodes = []


SENTINEL_MASTER = "ratefuse"


class RedisSentinelServers:
    """`RedisSentinelServers` is a primary, its replica and one
    ``redis-sentinel`` (``redis-server --sentinel``) watching them under
    the name `SENTINEL_MASTER`, on free loopback ports. The sentinel
    fails over on `failover` (SENTINEL FAILOVER needs no quorum)."""

    def __init__(self) -> None:
        self.primary: RedisServer | None = None
        self.replica: RedisServer | None = None
        self.sentinel: RedisServer | None = None

    def start(self) -> RedisSentinelServers:
        """`start` starts the three and waits until the sentinel knows the
        replica (it can fail over only to a replica it knows)."""
        try:
            # No 5 s wait before a replica's first sync (diskless default).
            quick = ("--repl-diskless-sync-delay", "0")
            self.primary = RedisServer(extra=quick).start()
            self.replica = RedisServer(
                extra=(*quick, "--replicaof", "127.0.0.1", str(self.primary.port))
            ).start()
            self._wait(lambda: "master_link_status:up" in self._info_replica())
            self.sentinel = _SentinelServer(self.primary.port).start()
            # A replica is a failover candidate once the sentinel has read
            # its INFO and seen its link to the primary up.
            self._wait(lambda: "master-link-status\nok" in self._replicas())
        except BaseException:
            self.stop()
            raise
        return self

    def _info_replica(self) -> str:
        assert self.replica is not None
        return command(self.replica.port, "INFO", "replication")

    def _replicas(self) -> str:
        assert self.sentinel is not None
        return command(self.sentinel.port, "SENTINEL", "REPLICAS", SENTINEL_MASTER)

    @staticmethod
    def _wait(ready: Any, timeout: float = CLUSTER_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise RuntimeError("the sentinel setup did not become ready")
            time.sleep(0.02)

    def replica_port(self) -> int:
        """`replica_port` is the port of the server started as replica."""
        assert self.replica is not None
        return self.replica.port

    def master_port(self) -> int:
        """`master_port` is the primary's port as the sentinel names it."""
        assert self.sentinel is not None
        reply = command(
            self.sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER
        )
        return int(reply.split()[1])

    def failover(self) -> None:
        """`failover` asks the sentinel to fail over now."""
        assert self.sentinel is not None
        reply = command(self.sentinel.port, "SENTINEL", "FAILOVER", SENTINEL_MASTER)
        if not reply.startswith("OK"):
            raise RuntimeError(f"SENTINEL FAILOVER answered {reply!r}")

    def wait_promoted(self, port: int, timeout: float = CLUSTER_TIMEOUT) -> None:
        """`wait_promoted` waits until the sentinel names ``port`` primary
        and that server says it is one."""
        self._wait(
            lambda: (
                self.master_port() == port
                and "role:master" in command(port, "INFO", "replication")
            ),
            timeout,
        )

    def stop(self) -> None:
        """`stop` stops the sentinel, then the servers (by PID)."""
        for server in (self.sentinel, self.replica, self.primary):
            if server is not None:
                server.stop()
        self.sentinel = self.replica = self.primary = None


class _SentinelServer(RedisServer):
    # A redis-server in sentinel mode, monitoring the primary on
    # ``primary_port`` with quorum 1; its config file (which the sentinel
    # rewrites) is in its own directory.

    def __init__(self, primary_port: int) -> None:
        super().__init__()
        config = self.directory / "sentinel.conf"
        config.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.directory}\n"
            "logfile sentinel.log\n"
            f"sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {primary_port} 1\n"
            f"sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n"
            f"sentinel failover-timeout {SENTINEL_MASTER} 5000\n"
        )
        self.config = config

    def start(self) -> RedisServer:
        self._launch_answering(
            [self.binary, str(self.config), "--sentinel"],
            f"redis-sentinel on port {self.port}",
        )
        return self


def hammer(
    port: int,
    name: str,
    limits: object,
    decisions: int,
    barrier: object,
    results: object,
) -> None:
    """`hammer` is one worker process of the accuracy test: after the
    barrier it asks for one unit of the shared key ``decisions`` times, and
    reports (admitted, server time before, server time after) in us."""
    import redis

    from ratefuse.redis import RedisBackend, RedisLimiter

    client = redis.Redis(host="127.0.0.1", port=port)
    # This test judges accuracy, not latency: a loaded machine must not turn
    # a slow answer into a failed worker, so the timeout is generous.
    with RedisLimiter(
        limits,  # type: ignore[arg-type]
        backend=RedisBackend(client, timeout=10.0),
        name=name,
        on_backend_error="raise",
        # Exact mode: every decision is a round trip, so the workers overlap
        # for the whole run. (A deny cache answers denials locally, and the
        # workers would finish their count in a few ms, all end effects.)
        deny_cache=False,
    ) as limiter:
        limiter.decide("warm-up", 0)  # connects and loads the script
        barrier.wait(timeout=60)  # type: ignore[attr-defined]
        seconds, micros = client.time()
        first = seconds * 1_000_000 + micros
        admitted = sum(limiter.try_acquire("shared") for _ in range(decisions))
        seconds, micros = client.time()
        last = seconds * 1_000_000 + micros
    client.close()
    results.put((admitted, first, last))  # type: ignore[attr-defined]


def gather(workers: list[Any], results: Any) -> list[Any]:
    """`gather` starts the worker processes, takes one report from each off
    ``results`` and checks that every worker exited cleanly. Workers are
    daemons, killed in the finally: one that dies before a barrier fails the
    test instead of leaving the others (and pytest) waiting forever."""
    try:
        for worker in workers:
            worker.start()
        reports = [results.get(timeout=60) for _ in workers]
        for worker in workers:
            worker.join(timeout=60)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=5)
        results.close()
        results.join_thread()
    return reports
