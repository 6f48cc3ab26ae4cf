"""`EtcdConfigSource`: a fleet process following a configuration in etcd
(see `ratefuse.config._etcd_store` for where it lives), over the HTTP
gateway's watch stream."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from typing import TYPE_CHECKING, Any

from ratefuse.config._etcd_store import (
    DEFAULT_ETCD_KEY,
    DEFAULT_STORE_TIMEOUT,
    MIN_ETCD_ACK_TTL,
    EtcdConfigStore,
)
from ratefuse.config._following import FollowingSource
from ratefuse.config._source import (
    DEFAULT_ACK_TTL,
    DEFAULT_RETRY_INTERVAL,
    ConfigDocument,
    Deliver,
)

if TYPE_CHECKING:
    import requests
    from etcd3gw.lease import Lease

logger = logging.getLogger("ratefuse.config")


class EtcdConfigSource(FollowingSource[EtcdConfigStore]):
    """`EtcdConfigSource` follows the configuration in the etcd at ``url``
    under ``key``, or every key under the prefix ``key`` with ``prefix``
    (see `EtcdConfigStore`); a `ConfigSource`.

    Its thread reads the key (or prefix) and the store's revision, then
    watches it from the next revision, delivering each version the watch
    reports (for a prefix: the prefix read at the change's revision);
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
        prefix: bool = False,
        member: str | None = None,
        ack_ttl: float = DEFAULT_ACK_TTL,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        super().__init__(member, ack_ttl, MIN_ETCD_ACK_TTL, retry_interval)
        self.store = EtcdConfigStore(url, key=key, prefix=prefix, timeout=timeout)
        self._changed = threading.Event()  # a version to acknowledge
        self._threads: list[threading.Thread] = []
        self._stream_lock = threading.Lock()
        self._stream: requests.Response | None = None
        self._lease: Lease | None = None

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
                self._store_lost(exc)
            self._stop.wait(self.retry_interval)

    def _follow(self, deliver: Deliver) -> None:
        # One watch stream's life: read, then watch from the next revision
        # until the stream ends, fails or is cut.
        from etcd3gw.utils import _decode, _encode, _increment_last_byte

        document, revision = self.store.read_at()
        self._store_read()
        if document is not None:
            self._delivered(deliver(document))
        client = self.store.client
        watch: dict[str, Any] = {
            "key": _encode(self.store.key),
            "start_revision": revision + 1,
        }
        if self.store.prefix:
            watch["range_end"] = _encode(_increment_last_byte(self.store.key))
        request = {"create_request": watch}
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
                if self.store.prefix and result.get("events"):
                    # The whole prefix as it was after this change.
                    at = int(result["header"]["revision"])
                    document = self.store.read_at(at)[0]
                    if document is not None:
                        self._delivered(deliver(document))
                    continue
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
