"""`AsyncRedisBackendIO` and `AsyncRedisStore`: the redis.asyncio I/O.

The asyncio twin of :mod:`._sync`, and only its I/O: the same sans-I/O
steps (:mod:`._backend_core`, :mod:`._exchange`, :mod:`._binding`) drive
both, so the two make the same calls and the same decisions by
construction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from ratefuse.core.errors import BackendError, CircuitOpenError
from ratefuse.core.spec import LimitSpec
from ratefuse.engine.deadline import refuse_if_spent
from ratefuse.engine.subject import Decision
from ratefuse.redis._async_io import AsyncTransport, connection_factory
from ratefuse.redis._backend_core import (
    AsyncClosing,
    BackendCore,
    Costs,
    Keys,
    StoreCore,
)
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

AsyncClient = redis.asyncio.Redis | RedisCluster


class AsyncRedisBackendIO(BackendCore[AsyncClient, AsyncTransport], AsyncClosing):
    """`AsyncRedisBackendIO` is :class:`._sync.RedisBackendIO` for redis.asyncio:
    ``client`` is a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``;
    the other arguments and the behaviour are the same. One event loop;
    `aclose` closes the backend's connections (not the client).
    """

    def _connect(
        self, client: AsyncClient, timeout: float
    ) -> tuple[AsyncTransport, list[Address]]:
        factory, seeds, pool, tls = connection_factory(client, timeout)
        check_primary_pool(pool)
        watch = SentinelWatch(pool) if sentinel_pool(pool) else None
        return AsyncTransport(factory, timeout, watch, tls), seeds

    def _new_lock(self) -> asyncio.Lock:
        return asyncio.Lock()

    def bind(self, specs: Sequence[LimitSpec], name: str) -> AsyncRedisStore:
        """`bind`: see RedisBackendIO.bind."""
        return AsyncRedisStore(self, self._binding(specs, name))

    async def aclose(self) -> None:
        """`aclose` closes the backend's connections."""
        await self._transport.close()

    async def _routing(self) -> SlotMap | None:
        # See RedisBackendIO._routing.
        slots = self._slots
        if slots is None or not slots.stale:
            return slots
        async with self._refresh_lock:
            if slots.stale:
                steps = self._refresh_steps(slots)
                address = next(steps)
                while address is not None:
                    address = steps.send(
                        await self._cluster_slots(address, slots.command)
                    )
        return slots

    async def _first_contact(self, plan: Plan, rounds: Exchange) -> Plan:
        # ``plan`` after asking each node new to the backend for its
        # eviction policy (see _eviction); a node that does not answer
        # fails its calls with that error and is asked again next time.
        kept: Plan = []
        for address, calls in plan:
            if self._eviction.due(address):
                try:
                    reply: object = await self._transport.command(
                        address, *EVICTION_CHECK
                    )
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

    async def _cluster_slots(
        self, address: Address, command: tuple[str, str]
    ) -> object:
        # ``command`` (CLUSTER SHARDS or SLOTS) from the node at ``address``,
        # through its breaker:
        # the reply, or the exception that ended it (the breaker's error,
        # without I/O, when open).
        permit = self._ask_node(address)
        if isinstance(permit, CircuitOpenError):
            return permit
        try:
            reply: object = await self._transport.command(address, *command)
        except Exception as exc:
            permit.on_error(0.0, exc)
            return exc
        except BaseException:
            permit.release()
            raise
        permit.on_success(0.0)
        return reply

    async def _run(
        self, packer: Packer, calls: list[Call], size: int, convert: Convert | None
    ) -> list[Any]:
        # One request through the breakers: every round of the exchange.
        # ``calls`` is not empty (an empty batch takes no permit). A spent
        # deadline refuses it before any permit or I/O.
        refuse_if_spent("redis")
        if self._slots is not None:
            return await self._run_cluster(packer, calls, size, convert)
        # One node, one breaker: its permit before anything else.
        permit = self._admit()
        try:
            rounds = Exchange(packer, calls, size, None, self._counters, convert)
            await self._rounds(rounds)
        except BaseException as exc:
            self._abandon(permit, exc)
            raise
        return self._settle(permit, rounds)

    async def _decide_one(self, packer: Packer, key: bytes, cost: int) -> RawReply:
        # See RedisBackendIO._decide_one: a verdict settles the request
        # without an Exchange (or a Call); anything else goes on through
        # one as its first round's reply.
        if self._slots is not None or None not in self._eviction.asked:
            call = single_call(packer, key, cost, None, self.cluster)
            return self._only_one(await self._run(packer, [call], 1, None))
        refuse_if_spent("redis")
        permit = self._admit()
        try:
            fcall, reply = await self._transport.decide_one(packer, key, cost)
            raw = self._short(packer, reply, cost, permit)
            if raw is not None:
                return raw
            call = single_call(packer, key, cost, None, False)
            call.fcall, call.paths = fcall, self._transport.paths  # as sent
            rounds = Exchange(packer, [call], 1, None, self._counters, None)
            sent = rounds.next_round()
            assert sent is not None  # one call not yet answered
            rounds.count_round(sent)
            rounds.receive(call, reply)
            await self._rounds(rounds)
        except BaseException as exc:
            self._abandon(permit, exc)
            raise
        return self._only_one(self._settle(permit, rounds))

    @staticmethod
    def _only_one(outcomes: list[Any]) -> RawReply:
        # The reply of a one-call request, or its error raised.
        return StoreCore._only(outcomes)  # type: ignore[no-any-return]

    async def _rounds(self, rounds: Exchange) -> None:
        # The single node's rounds of ``rounds``, to the end.
        plan = rounds.next_round()
        while plan is not None:
            if None not in self._eviction.asked:
                plan = await self._first_contact(plan, rounds)
            if plan:
                rounds.count_round(plan)
                await self._transport.round_trip(plan, rounds.receive)
            plan = rounds.next_round()

    async def _run_cluster(
        self, packer: Packer, calls: list[Call], size: int, convert: Convert | None
    ) -> list[Any]:
        # `_run` on a cluster: each node's permit when a round first sends
        # to it; a node whose breaker is open fails its calls without I/O.
        permits = self._permits()
        try:
            slots = await self._routing()
            rounds = Exchange(packer, calls, size, slots, self._counters, convert)
            plan = rounds.next_round()
            while plan is not None:
                plan = await self._first_contact(permits.admit(plan, rounds), rounds)
                if plan:
                    rounds.count_round(plan)
                    await self._transport.round_trip(plan, rounds.receive)
                plan = rounds.next_round()
        except BaseException as exc:
            permits.abandon(exc)
            raise
        permits.settle(rounds)
        return rounds.outcomes

    async def _delete(self, key: bytes) -> None:
        # See RedisBackendIO._delete.
        try:
            steps = redirected(key, await self._routing())
            address, asking = next(steps)
            while True:
                address, asking = steps.send(
                    await self._transport.command(address, "DEL", key, asking=asking)
                )
        except StopIteration:
            return
        except Exception as exc:
            self._reset_failed(exc)


class AsyncRedisStore(StoreCore[AsyncRedisBackendIO]):
    """`AsyncRedisStore` is :class:`._sync.RedisStore` with awaited verbs."""

    async def decide_raw(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> RawReply:
        """`decide_raw`: see RedisStore.decide_raw."""
        if now_us is None:
            binding = self.binding
            return await self.backend._decide_one(
                binding.packer, binding.schema.key(key), binding.cost(cost)
            )
        return await self.send(self.binding.packer, self._single(key, cost, now_us))

    async def send(self, packer: Packer, call: Call) -> RawReply:
        """`send`: see RedisStore.send."""
        return self._only(await self.backend._run(packer, [call], 1, None))  # type: ignore[no-any-return]

    async def decide_us(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> ScriptReply:
        """`decide_us`: see RedisStore.decide_us."""
        return ScriptReply.of(await self.decide_raw(key, cost, now_us))

    async def decide(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> Decision:
        """`decide`: see RedisStore.decide."""
        return self.binding.decision(await self.decide_raw(key, cost, now_us))

    async def decide_many_raw(
        self, keys: Keys, costs: Costs = None, now_us: int | None = None
    ) -> list[RawReply | BackendError]:
        """`decide_many_raw`: see RedisStore.decide_many_raw."""
        return await self._many(keys, costs, now_us, None)

    async def decide_many_us(
        self, keys: Keys, costs: Costs = None, now_us: int | None = None
    ) -> list[ScriptReply | BackendError]:
        """`decide_many_us`: see RedisStore.decide_many_us."""
        return await self._many(keys, costs, now_us, ScriptReply.of_each)

    async def decide_many(
        self, keys: Keys, costs: Costs = None, now_us: int | None = None
    ) -> list[Decision | BackendError]:
        """`decide_many`: see RedisStore.decide_many."""
        return await self._many(keys, costs, now_us, self.binding.decisions)

    async def _many(
        self, keys: Keys, costs: Costs, now_us: int | None, convert: Convert | None
    ) -> list[Any]:
        calls = self._plan(keys, costs, now_us)
        if not calls:
            return []
        return await self.backend._run(self.binding.packer, calls, len(keys), convert)

    async def reset(self, key: Subject) -> None:
        """`reset`: see RedisStore.reset."""
        await self.backend._delete(self.binding.schema.key(key))
