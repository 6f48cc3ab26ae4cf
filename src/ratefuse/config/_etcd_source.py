"""A config source in etcd (v3, through its HTTP gateway with etcd3gw): the
document in one key, its version the key's revision (``mod_revision``),
written by a transaction that compares that revision; acknowledgements in
keys under a lease, so a dead process's drop out with its lease.

Keys (``key`` defaults to ``/ratefuse/config``): ``<key>`` and
``<key>.acks/<member>`` per process. Needs etcd3gw (``ratefuse[etcd]``),
imported when a store is built.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ratefuse.config._source import (
    DEFAULT_ACK_TTL,
    DEFAULT_RETRY_INTERVAL,
    Acknowledgement,
    ConfigDocument,
    Deliver,
    StoreError,
    VersionConflictError,
    check_member,
    check_seconds,
    default_member,
)

if TYPE_CHECKING:
    import requests
    from etcd3gw.client import Etcd3Client
    from etcd3gw.lease import Lease

logger = logging.getLogger("ratefuse.config")

DEFAULT_ETCD_KEY: Final = "/ratefuse/config"
# DEFAULT_STORE_TIMEOUT bounds (seconds) each request but the watch stream.
DEFAULT_STORE_TIMEOUT: Final = 2.0
# etcd refuses leases shorter than about 2 s (its election timeout).
MIN_ETCD_ACK_TTL: Final = 2.0


class EtcdConfigStore:
    """`EtcdConfigStore` is the configuration kept in the etcd at ``url``
    (``http://host:port`` or ``https://...``, a client URL) under ``key``;
    each request is bounded by ``timeout`` seconds. See `ConfigStore`."""

    def __init__(
        self,
        url: str,
        *,
        key: str = DEFAULT_ETCD_KEY,
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        if not isinstance(key, str) or not key or len(key) > 200:
            raise ValueError(f"key must be a string of 1-200 characters, got {key!r}")
        self.timeout = check_seconds("timeout", timeout, 0.001)
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"url must be http://host:port or https://..., got {url!r}"
            )
        from etcd3gw.client import Etcd3Client

        self.url = url
        self.key = key
        self.acks = f"{key}.acks/"
        self.client: Etcd3Client = Etcd3Client(
            host=parts.hostname,
            port=parts.port or 2379,
            protocol=parts.scheme,
            timeout=self.timeout,
        )

    def read_at(self) -> tuple[ConfigDocument | None, int]:
        """`read_at` is the document (None if there is none) and the
        store's revision when it was read."""
        from etcd3gw.utils import _decode, _encode

        with self._errors():
            reply = self.client.post(
                self.client.get_url("/kv/range"), json={"key": _encode(self.key)}
            )
        revision = int(reply["header"]["revision"])
        kvs = reply.get("kvs", [])
        if not kvs:
            return None, revision
        value = _decode(kvs[0].get("value", ""))
        return ConfigDocument(int(kvs[0]["mod_revision"]), value), revision

    def read(self) -> ConfigDocument | None:
        """`read` is the document in etcd, None if there is none."""
        return self.read_at()[0]

    def write(self, text: bytes, expected_version: int) -> int:
        """`write` stores ``text`` if the key's revision is still
        ``expected_version`` (0: no key) and returns its new revision;
        else raises VersionConflictError."""
        from etcd3gw.utils import _encode

        key = _encode(self.key)
        with self._errors():
            reply = self._transaction(key, text, expected_version)
        if reply.get("succeeded"):
            return int(reply["header"]["revision"])
        kvs = reply["responses"][0]["response_range"].get("kvs", [])
        raise VersionConflictError(
            expected_version, int(kvs[0]["mod_revision"]) if kvs else 0
        )

    def _transaction(self, key: str, text: bytes, expected: int) -> Any:
        # Puts `text` if the key's mod_revision is `expected`, else reads it.
        from etcd3gw.utils import _encode

        return self.client.transaction(
            {
                "compare": [
                    {
                        "key": key,
                        "result": "EQUAL",
                        "target": "MOD",
                        "mod_revision": expected,
                    }
                ],
                "success": [{"request_put": {"key": key, "value": _encode(text)}}],
                "failure": [{"request_range": {"key": key}}],
            }
        )

    def lease(self, ttl: float) -> Lease:
        """`lease` grants a lease of ``ttl`` seconds (at least 2)."""
        return self.client.lease(max(int(MIN_ETCD_ACK_TTL), round(ttl)))

    def acknowledge(self, member: str, version: int, lease: Lease) -> None:
        """`acknowledge` reports that ``member`` runs ``version``, for as
        long as ``lease`` lives."""
        self.client.put(self.acks + member, str(version), lease=lease)

    def acknowledgements(self) -> list[Acknowledgement]:
        """`acknowledgements` are the live ones, by member."""
        found = []
        with self._errors():
            entries = self.client.get_prefix(self.acks)
        for value, meta in entries:
            lease_id = int(meta.get("lease", 0))
            ttl = -1
            if lease_id:
                with self._errors():
                    reply = self.client.post(
                        self.client.get_url("/kv/lease/timetolive"),
                        json={"ID": lease_id},
                    )
                ttl = int(reply.get("TTL", -1))
            member = bytes(meta["key"])[len(self.acks.encode()) :].decode()
            if ttl > 0:
                found.append(Acknowledgement(member, int(value), float(ttl)))
        return sorted(found, key=lambda ack: ack.member)

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        # etcd3gw's and requests' errors as StoreError naming the store.
        import requests
        from etcd3gw.exceptions import Etcd3Exception

        try:
            yield
        except (Etcd3Exception, requests.RequestException, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            raise StoreError(f"{self.describe()}: {detail}") from exc

    def close(self) -> None:
        """`close` closes the store's connections."""
        self.client.session.close()

    def describe(self) -> str:
        """`describe` names the store: its URL and key."""
        return f"etcd {self.url} key {self.key}"


class EtcdConfigSource:
    """`EtcdConfigSource` follows the configuration in the etcd at ``url``
    under ``key`` (see `EtcdConfigStore`); a `ConfigSource`.

    Its thread reads the key and the store's revision, then watches the
    key from the next revision, delivering each version the watch reports;
    when the stream ends or fails it reconnects every ``retry_interval``
    seconds and reads again (a watch that starts from the revision read
    misses nothing in between). A second thread keeps a lease of
    ``ack_ttl`` seconds (at least 2) alive and acknowledges under it the
    version the process runs as ``member`` (default ``host:pid``); when
    etcd stops answering it, it also restarts the watch, so a silent
    network cut is noticed within ``ack_ttl`` / 3 + ``timeout``.
    """

    def __init__(
        self,
        url: str,
        *,
        key: str = DEFAULT_ETCD_KEY,
        member: str | None = None,
        ack_ttl: float = DEFAULT_ACK_TTL,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        self.member = check_member(default_member() if member is None else member)
        self.ack_ttl = check_seconds("ack_ttl", ack_ttl, MIN_ETCD_ACK_TTL)
        self.retry_interval = check_seconds("retry_interval", retry_interval, 0.0)
        self.store = EtcdConfigStore(url, key=key, timeout=timeout)
        self.reconnects = 0
        self._stop = threading.Event()
        self._changed = threading.Event()  # a version to acknowledge
        self._threads: list[threading.Thread] = []
        self._stream_lock = threading.Lock()
        self._stream: requests.Response | None = None
        self._version: int | None = None
        self._lease: Lease | None = None
        self._lost = False  # since the last successful read

    def describe(self) -> str:
        """`describe` names the source: the store's URL and key."""
        return self.store.describe()

    def start(self, deliver: Deliver) -> None:
        """`start` starts the watching and acknowledging threads (once)."""
        if self._threads:
            raise RuntimeError("the source is started already")
        self._threads = [
            threading.Thread(
                target=self._watch_loop,
                args=(deliver,),
                name="ratefuse-config-etcd",
                daemon=True,
            ),
            threading.Thread(
                target=self._ack_loop, name="ratefuse-config-etcd-ack", daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        """`close` stops the threads, revokes the lease (dropping the
        acknowledgement) and closes the connections."""
        self._stop.set()
        self._changed.set()
        self._cut_stream()
        for thread in self._threads:
            thread.join()
        if self._lease is not None:
            try:
                self._lease.revoke()
            except Exception:  # an unreachable etcd expires it by its TTL
                logger.debug("config: could not revoke %s", self.member, exc_info=True)
        self.store.close()

    def _watch_loop(self, deliver: Deliver) -> None:
        while not self._stop.is_set():
            try:
                self._follow(deliver)
            except Exception as exc:  # etcd3gw, requests and JSON errors alike
                if self._stop.is_set():
                    return  # `close` cut the stream
                self.reconnects += 1
                # Once per outage at warning: a dead store must not flood logs.
                (logger.debug if self._lost else logger.warning)(
                    "config.source_lost: %s: %s", self.describe(), exc
                )
                self._lost = True
            self._stop.wait(self.retry_interval)

    def _follow(self, deliver: Deliver) -> None:
        # One watch stream's life: read, then watch from the next revision
        # until the stream ends, fails or is cut.
        from etcd3gw.utils import _decode, _encode

        document, revision = self.store.read_at()
        if self._lost:
            self._lost = False
            logger.info("config.source_recovered: %s", self.describe())
        if document is not None:
            self._delivered(deliver(document))
        client = self.store.client
        request: dict[str, Any] = {
            "create_request": {
                "key": _encode(self.store.key),
                "start_revision": revision + 1,
            }
        }
        response = client.session.post(
            client.get_url("/watch"),
            json=request,
            stream=True,
            timeout=(self.store.timeout, None),
        )
        with self._stream_lock:
            if self._stop.is_set():
                response.close()
                return
            self._stream = response
        try:
            response.raise_for_status()
            for line in response.iter_lines():
                if not line.strip():
                    continue
                result = _result(json.loads(line))
                for event in result.get("events", []):
                    kv = event["kv"]
                    if event.get("type", "PUT") == "PUT":
                        version = int(kv["mod_revision"])
                        value = _decode(kv.get("value", ""))
                        self._delivered(deliver(ConfigDocument(version, value)))
        finally:
            with self._stream_lock:
                self._stream = None
            response.close()

    def _delivered(self, version: int | None) -> None:
        if version is not None and version != self._version:
            self._version = version
            self._changed.set()

    def _cut_stream(self) -> None:
        # Unblocks the watch thread's read: shuts its socket down.
        with self._stream_lock:
            stream = self._stream
            if stream is None:
                return
            sock = getattr(getattr(stream.raw, "_connection", None), "sock", None)
            if isinstance(sock, socket.socket):
                with contextlib.suppress(OSError):  # closed already
                    sock.shutdown(socket.SHUT_RDWR)

    def _ack_loop(self) -> None:
        acknowledged: int | None = None
        while not self._stop.is_set():
            self._changed.wait(self.ack_ttl / 3)
            self._changed.clear()
            if self._stop.is_set() or self._version is None:
                continue
            try:
                if self._lease is None or self._lease.refresh() <= 0:
                    self._lease = self.store.lease(self.ack_ttl)
                    acknowledged = None
                if acknowledged != self._version:
                    acknowledged = self._version
                    self.store.acknowledge(self.member, acknowledged, self._lease)
            except Exception as exc:  # etcd unreachable: so is the watch
                logger.debug("config: %s: acknowledging: %s", self.describe(), exc)
                self._lease = None
                acknowledged = None
                self._cut_stream()


def _result(chunk: Any) -> dict[str, Any]:
    # A watch stream chunk's result; raises on an error or a cancelled
    # watch (compacted past its start), which the caller answers by
    # reading again.
    if "error" in chunk:
        raise RuntimeError(f"watch failed: {chunk['error']}")
    result: dict[str, Any] = chunk["result"]
    if result.get("canceled"):
        raise RuntimeError(f"watch cancelled: {result}")
    if result.get("created") is False:
        raise RuntimeError("watch not created")
    return result
