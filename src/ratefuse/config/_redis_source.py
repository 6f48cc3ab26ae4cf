"""A config source in Redis: the document and its version in one hash,
written by a compare-and-set script that announces each version on
pub/sub; acknowledgements in keys of their own with a TTL.

Keys (``key`` defaults to ``ratefuse:config``): the hash ``<key>``
(fields ``version`` and ``document``), the channel ``<key>:changed``, and
``<key>:ack:<member>`` per process. Needs redis-py (``ratefuse[redis]``),
imported when a store is built.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Final

from ratefuse.config._following import FollowingSource
from ratefuse.config._source import (
    DEFAULT_ACK_TTL,
    DEFAULT_RETRY_INTERVAL,
    Acknowledgement,
    ConfigDocument,
    Deliver,
    StoreError,
    VersionConflictError,
    check_seconds,
)

if TYPE_CHECKING:
    from redis import Redis

logger = logging.getLogger("ratefuse.config")

DEFAULT_REDIS_KEY: Final = "ratefuse:config"
# DEFAULT_STORE_TIMEOUT bounds (seconds) each connect, send and read.
DEFAULT_STORE_TIMEOUT: Final = 2.0
_KEY = re.compile(r"[A-Za-z0-9_.:{}-]{1,200}")
# How long (seconds) the follower's thread blocks for a message at a time:
# what `close` may wait, and the resolution of the acknowledgement refresh.
_POLL: Final = 0.1


def _push_script() -> str:
    return resources.files("ratefuse.config").joinpath("lua/push.lua").read_text()


class RedisConfigStore:
    """`RedisConfigStore` is the configuration kept under ``key`` in the
    Redis at ``redis``: a URL (``redis://``, ``rediss://`` or ``unix://``;
    each command bounded by ``timeout`` seconds, the connections closed by
    `close`) or a redis-py client (its own timeouts; the caller closes
    it). See `ConfigStore`."""

    def __init__(
        self,
        redis: str | Redis,
        *,
        key: str = DEFAULT_REDIS_KEY,
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise ValueError(
                f"key must be 1-200 letters, digits or _.:{{}}- characters, got {key!r}"
            )
        timeout = check_seconds("timeout", timeout, 0.001)
        from redis import Redis

        self.key = key
        self.channel = f"{key}:changed"
        self._owned = isinstance(redis, str)
        if isinstance(redis, str):
            self.url = redis
            self.client: Redis = Redis.from_url(
                redis, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        elif isinstance(redis, Redis):
            self.client = redis
            kwargs = redis.connection_pool.connection_kwargs
            self.url = f"redis://{kwargs.get('host')}:{kwargs.get('port')}"
        else:
            raise TypeError(f"redis must be a URL or a redis.Redis, got {redis!r}")
        self._push = self.client.register_script(_push_script())

    def read(self) -> ConfigDocument | None:
        """`read` is the document in Redis, None if there is none."""
        with self._errors():
            version, text = self.client.hmget(self.key, ["version", "document"])
        if version is None or text is None:
            return None
        return ConfigDocument(int(version), _as_bytes(text))

    def write(self, text: bytes, expected_version: int) -> int:
        """`write` stores ``text`` if Redis holds ``expected_version`` (0:
        nothing), announces it and returns its version; else raises
        VersionConflictError."""
        with self._errors():
            written, version = self._push(
                keys=[self.key], args=[text, expected_version, self.channel]
            )
        if not written:
            raise VersionConflictError(expected_version, int(version))
        return int(version)

    def acknowledge(self, member: str, version: int, ttl: float) -> None:
        """`acknowledge` reports that ``member`` runs ``version``, for
        ``ttl`` seconds."""
        self.client.set(self._ack_key(member), version, px=max(1, int(ttl * 1000)))

    def withdraw(self, member: str) -> None:
        """`withdraw` drops ``member``'s acknowledgement."""
        self.client.delete(self._ack_key(member))

    def acknowledgements(self) -> list[Acknowledgement]:
        """`acknowledgements` are the live ones, by member."""
        prefix = self._ack_key("")
        with self._errors():
            keys = sorted(self.client.scan_iter(match=_glob_escape(prefix) + "*"))
            pipeline = self.client.pipeline(transaction=False)
            for key in keys:
                pipeline.get(key)
                pipeline.pttl(key)
            replies = pipeline.execute()
        found = []
        for index, key in enumerate(keys):
            version, ttl_ms = replies[2 * index], replies[2 * index + 1]
            if version is not None and ttl_ms is not None and ttl_ms > 0:
                member = bytes(key)[len(prefix) :].decode()
                found.append(Acknowledgement(member, int(version), ttl_ms / 1000))
        return found

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        # redis-py's errors as StoreError naming the store.
        import redis

        try:
            yield
        except (redis.RedisError, OSError) as exc:
            raise StoreError(f"{self.describe()}: {exc}") from exc

    def _ack_key(self, member: str) -> str:
        return f"{self.key}:ack:{member}"

    def close(self) -> None:
        """`close` closes the client the store opened from a URL."""
        if self._owned:
            self.client.close()

    def describe(self) -> str:
        """`describe` names the store: its URL and key."""
        return f"redis {_redact(self.url)} key {self.key}"


class RedisConfigSource(FollowingSource[RedisConfigStore]):
    """`RedisConfigSource` follows the configuration under ``key`` in the
    Redis at ``redis``, a URL or a redis-py client (see
    `RedisConfigStore`); a `ConfigSource`.

    Its thread subscribes to ``<key>:changed``, then reads the document,
    and reads it again at every announcement; when the connection drops it
    reconnects every ``retry_interval`` seconds and reads again, so a
    version announced while it was away arrives late, never not at all.
    It acknowledges the version the process runs as ``member`` (default
    ``host:pid``) for ``ack_ttl`` seconds, refreshed every third of that.
    """

    def __init__(
        self,
        redis: str | Redis,
        *,
        key: str = DEFAULT_REDIS_KEY,
        member: str | None = None,
        ack_ttl: float = DEFAULT_ACK_TTL,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        timeout: float = DEFAULT_STORE_TIMEOUT,
    ) -> None:
        super().__init__(member, ack_ttl, 0.003, retry_interval)
        self.store = RedisConfigStore(redis, key=key, timeout=timeout)
        self._thread: threading.Thread | None = None

    def start(self, deliver: Deliver) -> None:
        """`start` starts the following thread (once)."""
        if self._thread is not None:
            raise RuntimeError("the source is started already")
        self._thread = threading.Thread(
            target=self._run, args=(deliver,), name="ratefuse-config-redis", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """`close` stops the thread, drops the acknowledgement and closes
        the connections."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        try:
            self.store.withdraw(self.member)
        except Exception:  # an unreachable store forgets it by its TTL
            logger.debug("config: could not withdraw %s", self.member, exc_info=True)
        self.store.close()

    def _run(self, deliver: Deliver) -> None:
        import redis

        while not self._stop.is_set():
            try:
                self._follow(deliver)
            except (redis.RedisError, OSError, StoreError) as exc:
                self._store_lost(exc)
            except Exception:
                logger.exception("config: %s: unexpected error", self.describe())
            self._stop.wait(self.retry_interval)

    def _follow(self, deliver: Deliver) -> None:
        # One connection's life: subscribe, read, then read at every
        # announcement, refreshing the acknowledgement, until it fails or
        # the source closes.
        pubsub = self.store.client.pubsub()
        try:
            pubsub.subscribe(self.store.channel)
            # Subscribed before reading: a version written after the read
            # is announced to this subscription.
            while not self._stop.is_set():
                message = pubsub.get_message(timeout=_POLL)
                if message is not None and message["type"] == "subscribe":
                    break
            refresh_at = 0.0
            announced = True
            while not self._stop.is_set():
                if announced:
                    self._deliver(deliver)
                    refresh_at = 0.0
                now = time.monotonic()
                if now >= refresh_at:
                    # Also the liveness check of a quiet subscription: a
                    # server cut off silently fails this within `timeout`.
                    if self._version is not None:
                        self.store.acknowledge(self.member, self._version, self.ack_ttl)
                    else:
                        self.store.client.ping()
                    refresh_at = now + self.ack_ttl / 3
                message = pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=_POLL
                )
                announced = message is not None and message["type"] == "message"
        finally:
            pubsub.close()

    def _deliver(self, deliver: Deliver) -> None:
        document = self.store.read()
        self._store_read()
        if document is not None:
            self._version = deliver(document)


def _glob_escape(text: str) -> str:
    # SCAN MATCH treats *?[]\ specially; the key's alphabet excludes them
    # but for braces, which are literal in a glob.
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def _redact(url: str) -> str:
    # A URL for logs: without a password.
    return re.sub(r"//[^@/]*@", "//***@", url)


def _as_bytes(value: bytes | str) -> bytes:
    # A reply as bytes (a client made with decode_responses gives str).
    return value.encode() if isinstance(value, str) else value
