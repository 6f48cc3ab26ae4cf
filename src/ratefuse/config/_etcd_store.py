"""A config store in etcd (v3, through its HTTP gateway with etcd3gw): the
document in one key, its version the key's revision (``mod_revision``),
written by a transaction that compares that revision; acknowledgements in
keys under a lease, so a dead process's drop out with its lease.

Keys (``key`` defaults to ``/ratefuse/config``): ``<key>`` and
``<key>.acks/<member>`` per process. With ``prefix=True`` the key is a
prefix ending in ``/`` and the configuration is every key under it, read
as one TOML document (the fragments in key order; a table declared in two
of them makes the version invalid), versioned by the revision of the
latest change under it; the acknowledgements go under
``<prefix without its />.acks/``. Needs etcd3gw (``ratefuse[etcd]``),
imported when a store is built.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from ratefuse.config._source import (
    Acknowledgement,
    ConfigDocument,
    StoreError,
    VersionConflictError,
    check_seconds,
)

if TYPE_CHECKING:
    from etcd3gw.client import Etcd3Client
    from etcd3gw.lease import Lease

DEFAULT_ETCD_KEY: Final = "/ratefuse/config"
# DEFAULT_STORE_TIMEOUT bounds (seconds) each request but the watch stream.
DEFAULT_STORE_TIMEOUT: Final = 2.0
# etcd refuses leases shorter than about 2 s (its election timeout).
MIN_ETCD_ACK_TTL: Final = 2.0


class EtcdConfigStore:
    """`EtcdConfigStore` is the configuration kept in the etcd at ``url``
    (``http://host:port`` or ``https://...``, a client URL) under ``key``,
    or under every key below it with ``prefix`` (``key`` then ends in
    ``/``; such a store is read, not written: push each fragment to its own
    key); each request is bounded by ``timeout`` seconds. See
    `ConfigStore`."""

    def __init__(
        self,
        url: str,
        *,
        key: str = DEFAULT_ETCD_KEY,
        prefix: bool = False,
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        if not isinstance(key, str) or not key or len(key) > 200:
            raise ValueError(f"key must be a string of 1-200 characters, got {key!r}")
        if prefix and not key.endswith("/"):
            raise ValueError(f"key must end with / to be a prefix, got {key!r}")
        self.timeout = check_seconds("timeout", timeout, 0.001)
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                f"url must be http://host:port or https://..., got {url!r}"
            )
        from etcd3gw.client import Etcd3Client

        self.url = url
        self.key = key
        self.prefix = prefix
        self.acks = f"{key.rstrip('/')}.acks/"
        self.client: Etcd3Client = Etcd3Client(
            host=parts.hostname,
            port=parts.port or 2379,
            protocol=parts.scheme,
            timeout=self.timeout,
        )

    def read_at(self, revision: int = 0) -> tuple[ConfigDocument | None, int]:
        """`read_at` is the document (None if there is none) and the
        store's revision when it was read: now, or at ``revision`` (then
        also the version of a prefix's document, which may have lost a
        key at that revision)."""
        from etcd3gw.utils import _decode, _encode, _increment_last_byte

        request = {"key": _encode(self.key), "revision": revision}
        if self.prefix:
            request["range_end"] = _encode(_increment_last_byte(self.key))
        with self._errors():
            reply = self.client.post(self.client.get_url("/kv/range"), json=request)
        at = int(reply["header"]["revision"]) if revision == 0 else revision
        kvs = sorted(reply.get("kvs", []), key=lambda kv: _decode(kv["key"]))
        if not kvs:
            return None, at
        version = max(int(kv["mod_revision"]) for kv in kvs)
        if not self.prefix:
            return ConfigDocument(version, _decode(kvs[0].get("value", ""))), at
        text = b"".join(
            b"# " + _decode(kv["key"]) + b"\n" + _decode(kv.get("value", "")) + b"\n"
            for kv in kvs
        )
        return ConfigDocument(max(version, revision), text), at

    def read(self) -> ConfigDocument | None:
        """`read` is the document in etcd, None if there is none."""
        return self.read_at()[0]

    def write(self, text: bytes, expected_version: int) -> int:
        """`write` stores ``text`` if the key's revision is still
        ``expected_version`` (0: no key) and returns its new revision;
        else raises VersionConflictError."""
        from etcd3gw.utils import _encode

        if self.prefix:
            raise TypeError(
                "a prefix store is read only: push each fragment to its own key"
            )
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
