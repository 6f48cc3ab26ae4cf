"""`RedisBackendIO` and `RedisStore`: the redis-py (sync) backend's I/O
(:class:`ratefuse.redis.RedisBackend` adds the limiter builders).

Only the I/O: the backend drives the shared sans-I/O exchange
(:mod:`._exchange`: planning, decoding, redirections, reloads) through its
transport (:mod:`._sync_io`); settings, the breaker's bookkeeping and the
slot map's refresh plan are :mod:`._backend_core`, keys and packing
:mod:`._binding`. The asyncio twin (:mod:`._async`) awaits the same steps.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import redis
from redis.cluster import RedisCluster

from ratefuse.core.errors import BackendError, CircuitOpenError
from ratefuse.core.spec import LimitSpec
from ratefuse.engine.deadline import refuse_if_spent
from ratefuse.engine.subject import Decision
from ratefuse.redis._backend_core import BackendCore, Closing, Costs, Keys, StoreCore
from ratefuse.redis._codec import Packer, RawReply, ScriptReply
from ratefuse.redis._eviction import EVICTION_CHECK
from ratefuse.redis._exchange import (
    Call,
    Convert,
    Exchange,
    Plan,
    redirected,
    single_call,
)
from ratefuse.redis._schema import Subject
from ratefuse.redis._sentinel import (
    SentinelWatch,
    check_primary_pool,
    sentinel_pool,
)
from ratefuse.redis._slots import Address, SlotMap
from ratefuse.redis._sync_io import SyncTransport, connection_factory


class RedisBackendIO(BackendCore[redis.Redis | RedisCluster, SyncTransport], Closing):
    """`RedisBackendIO` keeps limiter state in Redis, through redis-py.

    ``client`` is a ``redis.Redis`` (one server) or ``redis.RedisCluster``;
    the backend opens its own connections with the client's settings
    (host, auth, TLS, ...) and these: ``timeout`` seconds (default 0.1) on
    each connect, send and read, no automatic retries. ``prefix`` opens
    every key and ``namespace`` is hashed into every key (see
    :mod:`._schema`). ``breaker`` guards every round trip: when open,
    requests fail at once with CircuitOpenError instead of costing their
    timeout (None: a breaker with ``default_breaker_config(timeout)``: it
    opens when half the calls of the last 5 timeouts, at least 0.5 s,
    failed). On a cluster each node has its own breaker with ``breaker``'s
    rules and clock (`node_breakers`), so a failing node fails only the
    keys of its slots; ``breaker`` itself then guards no round trip. Error
    replies about the server (OOM, BUSY, ...) count as failures, errors
    about one key's data do not; a key of the wrong type is repaired. Each
    node is asked its eviction policy before its first decision: one that
    can evict limiter keys is logged and counted (see :mod:`._eviction`).
    ``chunk`` bounds the keys of one batched script call.

    `bind` gives the store of one limiter. Thread-safe. `close` closes the
    backend's connections (not the client).
    """

    def _connect(
        self, client: redis.Redis | RedisCluster, timeout: float
    ) -> tuple[SyncTransport, list[Address]]:
        factory, seeds, pool, tls = connection_factory(client, timeout)
        check_primary_pool(pool)
        watch = SentinelWatch(pool) if sentinel_pool(pool) else None
        return SyncTransport(factory, watch, tls), seeds

    def _new_lock(self) -> threading.Lock:
        return threading.Lock()

    def bind(self, specs: Sequence[LimitSpec], name: str) -> RedisStore:
        """`bind` is the store of the limiter ``name`` with ``specs``;
        raises ValueError for limits the scripts cannot decide exactly."""
        return RedisStore(self, self._binding(specs, name))

    def close(self) -> None:
        """`close` closes the backend's connections."""
        self._transport.close()

    def _routing(self) -> SlotMap | None:
        # The slot map (None: one node), refreshed first when a transport
        # error left it stale; one thread refreshes while the others wait.
        slots = self._slots
        if slots is None or not slots.stale:
            return slots
        with self._refresh_lock:
            if slots.stale:
                steps = self._refresh_steps(slots)
                address = next(steps)
                while address is not None:
                    address = steps.send(self._cluster_slots(address, slots.command))
        return slots

    def _first_contact(self, plan: Plan, rounds: Exchange) -> Plan:
        # ``plan`` after asking each node new to the backend for its
        # eviction policy (see _eviction); a node that does not answer
        # fails its calls with that error and is asked again next time.
        kept: Plan = []
        for address, calls in plan:
            if self._eviction.due(address):
                try:
                    reply: object = self._transport.command(address, *EVICTION_CHECK)
                except Exception as exc:
                    reply = exc
                except BaseException as exc:
                    self._eviction.record(address, exc)  # asked again next time
                    raise
                if not self._eviction.record(address, reply):
                    for call in calls:
                        rounds.receive(call, reply)
                    continue
            kept.append((address, calls))
        return kept

    def _cluster_slots(self, address: Address, command: tuple[str, str]) -> object:
        # ``command`` (CLUSTER SHARDS or SLOTS) from the node at ``address``,
        # through its breaker:
        # the reply, or the exception that ended it (the breaker's error,
        # without I/O, when open).
        permit = self._ask_node(address)
        if isinstance(permit, CircuitOpenError):
            return permit
        try:
            reply: object = self._transport.command(address, *command)
        except Exception as exc:
            permit.on_error(0.0, exc)
            return exc
        except BaseException:
            permit.release()
            raise
        permit.on_success(0.0)
        return reply

    def _run(
        self, packer: Packer, calls: list[Call], size: int, convert: Convert | None
    ) -> list[Any]:
        # One request through the breakers: every round of the exchange.
        # ``calls`` is not empty (an empty batch takes no permit). A spent
        # deadline refuses it before any permit or I/O.
        refuse_if_spent("redis")
        if self._slots is not None:
            return self._run_cluster(packer, calls, size, convert)
        # One node, one breaker: its permit before anything else.
        permit = self._admit()
        try:
            rounds = Exchange(packer, calls, size, None, self._counters, convert)
            self._rounds(rounds)
        except BaseException as exc:
            self._abandon(permit, exc)
            raise
        return self._settle(permit, rounds)

    def _run_one(self, packer: Packer, call: Call) -> RawReply:
        # `_run` of one call, the sequential decision: on a single node
        # already contacted, a reply of five integers settles it without an
        # Exchange (its planning was most of a decision's client CPU); any
        # other reply goes on through an Exchange as its first round's.
        if self._slots is not None or None not in self._eviction.asked:
            return StoreCore._only(self._run(packer, [call], 1, None))  # type: ignore[no-any-return]
        refuse_if_spent("redis")
        permit = self._admit()
        try:
            reply = self._transport.call_one(call)
            raw = self._short(packer, reply, call.costs[0], permit)
            if raw is not None:
                return raw
            rounds = self._first_round(packer, call, reply)
        except BaseException as exc:
            self._abandon(permit, exc)
            raise
        return StoreCore._only(self._settle(permit, rounds))  # type: ignore[no-any-return]

    def _decide_one(self, packer: Packer, key: bytes, cost: int) -> RawReply:
        # `_run_one` of the single decision of ``cost`` (checked) for
        # ``key`` on the server's clock, with no Call made unless the reply
        # is not a verdict: the sequential decision's path.
        if self._slots is not None or None not in self._eviction.asked:
            call = single_call(packer, key, cost, None, self.cluster)
            return self._run_one(packer, call)
        budget = refuse_if_spent("redis")
        permit = self._admit()
        try:
            fcall, reply = self._transport.decide_one(packer, key, cost, budget)
            raw = self._short(packer, reply, cost, permit)
            if raw is not None:
                return raw
            call = single_call(packer, key, cost, None, False)
            # As sent: Call.choose's outcome when the transport sent it.
            call.fcall, call.paths = fcall, self._transport.paths
            rounds = self._first_round(packer, call, reply)
        except BaseException as exc:
            self._abandon(permit, exc)
            raise
        return StoreCore._only(self._settle(permit, rounds))  # type: ignore[no-any-return]

    def _first_round(self, packer: Packer, call: Call, reply: object) -> Exchange:
        # ``call``'s request through an Exchange, ``reply`` its first
        # round's (the call already sent), run to the end.
        rounds = Exchange(packer, [call], 1, None, self._counters, None)
        sent = rounds.next_round()
        assert sent is not None  # one call not yet answered
        rounds.count_round(sent)
        rounds.receive(call, reply)
        self._rounds(rounds)
        return rounds

    def _rounds(self, rounds: Exchange) -> None:
        # The single node's rounds of ``rounds``, to the end.
        plan = rounds.next_round()
        while plan is not None:
            if None not in self._eviction.asked:
                plan = self._first_contact(plan, rounds)
            if plan:
                rounds.count_round(plan)
                self._transport.round_trip(plan, rounds.receive)
            plan = rounds.next_round()

    def _run_cluster(
        self, packer: Packer, calls: list[Call], size: int, convert: Convert | None
    ) -> list[Any]:
        # `_run` on a cluster: each node's permit when a round first sends
        # to it; a node whose breaker is open fails its calls without I/O.
        permits = self._permits()
        try:
            slots = self._routing()
            rounds = Exchange(packer, calls, size, slots, self._counters, convert)
            plan = rounds.next_round()
            while plan is not None:
                plan = self._first_contact(permits.admit(plan, rounds), rounds)
                if plan:
                    rounds.count_round(plan)
                    self._transport.round_trip(plan, rounds.receive)
                plan = rounds.next_round()
        except BaseException as exc:
            permits.abandon(exc)
            raise
        permits.settle(rounds)
        return rounds.outcomes

    def _delete(self, key: bytes) -> None:
        # DEL ``key``, following MOVED and ASK.
        try:
            steps = redirected(key, self._routing())
            address, asking = next(steps)
            while True:
                reply = self._transport.command(address, "DEL", key, asking=asking)
                address, asking = steps.send(reply)
        except StopIteration:
            return
        except Exception as exc:
            self._reset_failed(exc)


class RedisStore(StoreCore[RedisBackendIO]):
    """`RedisStore` decides the keys of one limiter in Redis.

    Every verb raises BackendError when Redis cannot decide and
    CircuitOpenError when the breaker of the key's node is open (a batch
    holds these per decision instead); TypeError for a
    key that is not str, bytes or int; ValueError or TypeError (as the
    local engine) for a bad cost. ``now_us`` (integer microseconds on the
    server's clock) replaces the server's TIME: for tests only. Thread-safe.
    """

    def decide_raw(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> RawReply:
        """`decide_raw` is `decide_us` as a plain tuple (the fast path)."""
        if now_us is None:
            binding = self.binding
            return self.backend._decide_one(
                binding.packer, binding.schema.key(key), binding.cost(cost)
            )
        return self.send(self.binding.packer, self._single(key, cost, now_us))

    def send(self, packer: Packer, call: Call) -> RawReply:
        """`send` runs one script ``call`` packed by ``packer`` (the
        limiter's, or the lease script's) and returns its reply."""
        return self.backend._run_one(packer, call)

    def decide_us(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> ScriptReply:
        """`decide_us` decides ``cost`` for ``key`` and returns the script's
        integer reply: one round trip."""
        return ScriptReply.of(self.decide_raw(key, cost, now_us))

    def decide(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> Decision:
        """`decide` is `decide_us` as a Decision."""
        return self.binding.decision(self.decide_raw(key, cost, now_us))

    def decide_many_raw(
        self, keys: Keys, costs: Costs = None, now_us: int | None = None
    ) -> list[RawReply | BackendError]:
        """`decide_many_raw` is `decide_many_us` as plain tuples."""
        return self._many(keys, costs, now_us, None)

    def decide_many_us(
        self, keys: Keys, costs: Costs = None, now_us: int | None = None
    ) -> list[ScriptReply | BackendError]:
        """`decide_many_us` decides ``costs[i]`` (None: 1) for ``keys[i]``, in
        order per key, one round trip per node; an item is the BackendError
        of a decision that failed alone."""
        return self._many(keys, costs, now_us, ScriptReply.of_each)

    def decide_many(
        self, keys: Keys, costs: Costs = None, now_us: int | None = None
    ) -> list[Decision | BackendError]:
        """`decide_many` is `decide_many_us` with Decisions, built call by
        call as the replies arrive (while the server runs the next call)."""
        return self._many(keys, costs, now_us, self.binding.decisions)

    def _many(
        self, keys: Keys, costs: Costs, now_us: int | None, convert: Convert | None
    ) -> list[Any]:
        # One batch, grouped and planned, each call's replies converted by
        # ``convert`` as its reply arrives (None: kept as tuples).
        calls = self._plan(keys, costs, now_us)
        if not calls:
            return []
        return self.backend._run(self.binding.packer, calls, len(keys), convert)

    def reset(self, key: Subject) -> None:
        """`reset` deletes every limit's state of ``key``."""
        self.backend._delete(self.binding.schema.key(key))
