"""`RedisBackend` and `RedisStore`: the redis-py (sync) backend.

The backend drives the shared sans-I/O exchange (:mod:`._exchange`:
planning, decoding, redirections, reloads) through the breaker, with its
transport (:mod:`._sync_io`) doing the I/O; keys and packing are
:mod:`._binding`. The asyncio twin (:mod:`._async`) is this file with
awaits.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from ratefuse.breaker import CircuitBreaker
from ratefuse.core.backend_defaults import DEFAULT_TIMEOUT
from ratefuse.core.errors import BackendError
from ratefuse.core.spec import LimitSpec
from ratefuse.engine.subject import Decision
from ratefuse.redis._binding import Binding
from ratefuse.redis._codec import Packer, RawReply, ScriptReply, to_script_reply
from ratefuse.redis._connection import (
    check_chunk,
    check_timeout,
    default_breaker,
)
from ratefuse.redis._exchange import (
    DEFAULT_CHUNK,
    Call,
    Convert,
    Counters,
    Exchange,
    ExchangeCounts,
    redirected,
)
from ratefuse.redis._schema import DEFAULT_PREFIX, Subject
from ratefuse.redis._slots import SlotMap
from ratefuse.redis._sync_io import SyncTransport, connection_factory


class RedisBackend:
    """`RedisBackend` keeps limiter state in Redis, through redis-py.

    ``client`` is a ``redis.Redis`` (one server) or ``redis.RedisCluster``;
    the backend opens its own connections with the client's settings
    (host, auth, TLS, ...) and these: ``timeout`` seconds (default 0.1) on
    each connect, send and read, no automatic retries. ``prefix`` opens
    every key and ``namespace`` is hashed into every key (see
    :mod:`._schema`). ``breaker`` guards every round trip: when open,
    requests fail at once with CircuitOpenError instead of costing their
    timeout (None: a breaker with DEFAULT_BREAKER_CONFIG). ``chunk`` bounds
    the keys of one batched script call.

    `bind` gives the store of one limiter. Thread-safe. `close` closes the
    backend's connections (not the client).
    """

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        *,
        prefix: str = DEFAULT_PREFIX,
        namespace: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        breaker: CircuitBreaker | None = None,
        chunk: int = DEFAULT_CHUNK,
    ) -> None:
        self.timeout = check_timeout(timeout)
        self.chunk = check_chunk(chunk)
        self.prefix = prefix
        self.namespace = namespace
        self.breaker = default_breaker("redis") if breaker is None else breaker
        factory, self._seeds = connection_factory(client, self.timeout)
        self.cluster = bool(self._seeds)
        self._slots = SlotMap() if self.cluster else None
        self._transport = SyncTransport(factory)
        self._counters = Counters()
        self._refresh_lock = threading.Lock()

    def bind(self, specs: Sequence[LimitSpec], name: str) -> RedisStore:
        """`bind` is the store of the limiter ``name`` with ``specs``;
        raises ValueError for limits the scripts cannot decide exactly."""
        return RedisStore(self, Binding(specs, name, self.prefix, self.namespace))

    def stats(self) -> ExchangeCounts:
        """`stats` snapshots the backend's counters."""
        return self._counters.snapshot()

    def close(self) -> None:
        """`close` closes the backend's connections."""
        self._transport.close()

    def __enter__(self) -> RedisBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- I/O ---------------------------------------------------------------

    def _routing(self) -> SlotMap | None:
        slots = self._slots
        if slots is None or not slots.stale:
            return slots
        with self._refresh_lock:
            if not slots.stale:
                return slots
            failures = []
            for address in slots.addresses() + self._seeds:
                try:
                    reply = self._transport.command(address, "CLUSTER", "SLOTS")
                    slots.update(reply, address)
                except Exception as exc:
                    failures.append(exc)
                    continue
                self._counters.add("slot_map_refreshes")
                return slots
        raise BackendError(f"no cluster node answered CLUSTER SLOTS: {failures[-1]}")

    def _run(
        self,
        packer: Packer,
        calls: list[Call],
        size: int,
        convert: Convert | None = None,
    ) -> list[Any]:
        # One request through the breaker: every round of the exchange.
        if not calls:
            return []
        permit = self.breaker.try_acquire()
        if permit is None:
            self._counters.add("breaker_rejections")
            raise self.breaker.open_error()
        try:
            rounds = Exchange(
                packer, calls, size, self._routing(), self._counters, convert
            )
            plan = rounds.next_round()
            while plan is not None:
                self._transport.round_trip(plan, rounds.receive)
                plan = rounds.next_round()
        except Exception as exc:
            permit.on_error(0.0, exc)
            raise
        except BaseException:
            permit.release()
            raise
        failure = rounds.failure
        if failure is None:
            permit.on_success(0.0)
        else:
            permit.on_error(0.0, failure)
        return rounds.outcomes

    def _delete(self, key: bytes) -> None:
        try:
            steps = redirected(key, self._routing())
            address, asking = next(steps)
            while True:
                reply = self._transport.command(address, "DEL", key, asking=asking)
                address, asking = steps.send(reply)
        except StopIteration:
            return
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"Redis could not reset the key: {exc}") from exc


class RedisStore:
    """`RedisStore` decides the keys of one limiter in Redis.

    Every verb raises BackendError when Redis cannot decide and
    CircuitOpenError when the backend's breaker is open; TypeError for a
    key that is not str, bytes or int; ValueError or TypeError (as the
    local engine) for a bad cost. ``now_us`` (integer microseconds on the
    server's clock) replaces the server's TIME: for tests only. Thread-safe.
    """

    def __init__(self, backend: RedisBackend, binding: Binding) -> None:
        self.backend = backend
        self.binding = binding

    def decide_raw(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> RawReply:
        """`decide_raw` is `decide_us` as a plain tuple (the fast path)."""
        call = self.binding.single(key, cost, now_us, self.backend.cluster)
        return self.send(self.binding.packer, call)

    def send(self, packer: Packer, call: Call) -> RawReply:
        """`send` runs one script ``call`` packed by ``packer`` (the
        limiter's, or the lease script's) and returns its reply."""
        outcome: RawReply | BackendError = self.backend._run(packer, [call], 1)[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def decide_us(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> ScriptReply:
        """`decide_us` decides ``cost`` for ``key`` and returns the script's
        integer reply: one round trip."""
        return to_script_reply(self.decide_raw(key, cost, now_us))

    def decide(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> Decision:
        """`decide` is `decide_us` as a Decision."""
        return self.binding.decision(self.decide_raw(key, cost, now_us))

    def decide_many_raw(
        self,
        keys: Sequence[Subject],
        costs: Sequence[int] | None = None,
        now_us: int | None = None,
    ) -> list[RawReply | BackendError]:
        """`decide_many_raw` is `decide_many_us` as plain tuples."""
        return self._many(keys, costs, now_us, None)

    def decide_many_us(
        self,
        keys: Sequence[Subject],
        costs: Sequence[int] | None = None,
        now_us: int | None = None,
    ) -> list[ScriptReply | BackendError]:
        """`decide_many_us` decides ``costs[i]`` (None: 1) for ``keys[i]``, in
        order per key, one round trip per node; an item is the BackendError
        of a decision that failed alone."""
        return [
            outcome if isinstance(outcome, BackendError) else to_script_reply(outcome)
            for outcome in self.decide_many_raw(keys, costs, now_us)
        ]

    def decide_many(
        self,
        keys: Sequence[Subject],
        costs: Sequence[int] | None = None,
        now_us: int | None = None,
    ) -> list[Decision | BackendError]:
        """`decide_many` is `decide_many_us` with Decisions, built call by
        call as the replies arrive (while the server runs the next call)."""
        return self._many(keys, costs, now_us, self.binding.decisions)

    def _many(
        self,
        keys: Sequence[Subject],
        costs: Sequence[int] | None,
        now_us: int | None,
        convert: Convert | None,
    ) -> list[Any]:
        # One batch, grouped and planned, each call's replies converted by
        # ``convert`` as its reply arrives (None: kept as tuples).
        binding = self.binding
        calls = binding.plan(
            keys, costs, now_us, self.backend.cluster, self.backend.chunk
        )
        return self.backend._run(binding.packer, calls, len(keys), convert)

    def reset(self, key: Subject) -> None:
        """`reset` deletes every limit's state of ``key``."""
        self.backend._delete(self.binding.schema.key(key))
