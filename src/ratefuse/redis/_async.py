"""`AsyncRedisBackend` and `AsyncRedisStore`: the redis.asyncio I/O.

The asyncio twin of :mod:`._sync`, and only its I/O: the same sans-I/O
exchange (:mod:`._exchange`), binding and policy drive both, so the two
make the same calls and the same decisions by construction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from ratefuse.breaker import CircuitBreaker
from ratefuse.core.backend_defaults import DEFAULT_TIMEOUT
from ratefuse.core.errors import BackendError
from ratefuse.core.spec import LimitSpec
from ratefuse.engine.subject import Decision
from ratefuse.redis._async_io import AsyncTransport, connection_factory
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


class AsyncRedisBackend:
    """`AsyncRedisBackend` is :class:`._sync.RedisBackend` for redis.asyncio:
    ``client`` is a ``redis.asyncio.Redis`` or ``redis.asyncio.RedisCluster``;
    the other arguments and the behaviour are the same. One event loop;
    `aclose` closes the backend's connections (not the client).
    """

    def __init__(
        self,
        client: redis.asyncio.Redis | RedisCluster,
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
        self._transport = AsyncTransport(factory, self.timeout)
        self._counters = Counters()
        self._refresh_lock = asyncio.Lock()

    def bind(self, specs: Sequence[LimitSpec], name: str) -> AsyncRedisStore:
        """`bind`: see RedisBackend.bind."""
        return AsyncRedisStore(self, Binding(specs, name, self.prefix, self.namespace))

    def stats(self) -> ExchangeCounts:
        """`stats` snapshots the backend's counters."""
        return self._counters.snapshot()

    async def aclose(self) -> None:
        """`aclose` closes the backend's connections."""
        await self._transport.close()

    async def __aenter__(self) -> AsyncRedisBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- I/O ---------------------------------------------------------------

    async def _routing(self) -> SlotMap | None:
        slots = self._slots
        if slots is None or not slots.stale:
            return slots
        async with self._refresh_lock:
            if not slots.stale:
                return slots
            failures = []
            for address in slots.addresses() + self._seeds:
                try:
                    reply = await self._transport.command(address, "CLUSTER", "SLOTS")
                    slots.update(reply, address)
                except Exception as exc:
                    failures.append(exc)
                    continue
                self._counters.add("slot_map_refreshes")
                return slots
        raise BackendError(f"no cluster node answered CLUSTER SLOTS: {failures[-1]}")

    async def _run(
        self,
        packer: Packer,
        calls: list[Call],
        size: int,
        convert: Convert | None = None,
    ) -> list[Any]:
        # See RedisBackend._run: the same loop with awaited I/O.
        if not calls:
            return []
        permit = self.breaker.try_acquire()
        if permit is None:
            self._counters.add("breaker_rejections")
            raise self.breaker.open_error()
        try:
            rounds = Exchange(
                packer, calls, size, await self._routing(), self._counters, convert
            )
            plan = rounds.next_round()
            while plan is not None:
                await self._transport.round_trip(plan, rounds.receive)
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

    async def _delete(self, key: bytes) -> None:
        try:
            steps = redirected(key, await self._routing())
            address, asking = next(steps)
            while True:
                reply = await self._transport.command(
                    address, "DEL", key, asking=asking
                )
                address, asking = steps.send(reply)
        except StopIteration:
            return
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"Redis could not reset the key: {exc}") from exc


class AsyncRedisStore:
    """`AsyncRedisStore` is :class:`._sync.RedisStore` with awaited verbs."""

    def __init__(self, backend: AsyncRedisBackend, binding: Binding) -> None:
        self.backend = backend
        self.binding = binding

    async def decide_raw(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> RawReply:
        """`decide_raw` is `decide_us` as a plain tuple (the fast path)."""
        call = self.binding.single(key, cost, now_us, self.backend.cluster)
        return await self.send(self.binding.packer, call)

    async def send(self, packer: Packer, call: Call) -> RawReply:
        """`send`: see RedisStore.send."""
        outcome: RawReply | BackendError = (
            await self.backend._run(packer, [call], 1)
        )[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def decide_us(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> ScriptReply:
        """`decide_us` decides ``cost`` for ``key`` and returns the script's
        integer reply: one round trip."""
        return to_script_reply(await self.decide_raw(key, cost, now_us))

    async def decide(
        self, key: Subject, cost: int = 1, now_us: int | None = None
    ) -> Decision:
        """`decide` is `decide_us` as a Decision."""
        return self.binding.decision(await self.decide_raw(key, cost, now_us))

    async def decide_many_raw(
        self,
        keys: Sequence[Subject],
        costs: Sequence[int] | None = None,
        now_us: int | None = None,
    ) -> list[RawReply | BackendError]:
        """`decide_many_raw` is `decide_many_us` as plain tuples."""
        return await self._many(keys, costs, now_us, None)

    async def decide_many_us(
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
            for outcome in await self.decide_many_raw(keys, costs, now_us)
        ]

    async def decide_many(
        self,
        keys: Sequence[Subject],
        costs: Sequence[int] | None = None,
        now_us: int | None = None,
    ) -> list[Decision | BackendError]:
        """`decide_many` is `decide_many_us` with Decisions, built call by
        call as the replies arrive (while the server runs the next call)."""
        return await self._many(keys, costs, now_us, self.binding.decisions)

    async def _many(
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
        return await self.backend._run(binding.packer, calls, len(keys), convert)

    async def reset(self, key: Subject) -> None:
        """`reset`: see RedisStore.reset."""
        await self.backend._delete(self.binding.schema.key(key))
