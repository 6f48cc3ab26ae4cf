"""What the sync and asyncio Redis backends share, without I/O.

`BackendCore` holds a backend's settings, counters, slot map and the
breaker of each node (:mod:`._node_breakers`), and plans the slot map's
refresh; `StoreCore` binds one limiter to a backend. :mod:`._sync` and
:mod:`._async` add only the steps that wait on the network: driving the
exchange (:mod:`._exchange`) through their transports, the refresh, and
deleting a key. `Closing` and `AsyncClosing` give their owners the context
manager forms of ``close`` and ``aclose``.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, Generic, NoReturn, TypeVar

from ratefuse.breaker import CircuitBreaker, Permit
from ratefuse.core.backend_defaults import DEFAULT_TIMEOUT
from ratefuse.core.errors import BackendError, CircuitOpenError, DeadlineExceeded
from ratefuse.redis._binding import Binding
from ratefuse.redis._codec import Packer, RawReply
from ratefuse.redis._connection import check_chunk, check_timeout, default_breaker
from ratefuse.redis._eviction import EvictionCheck
from ratefuse.redis._exchange import (
    DEFAULT_CHUNK,
    Call,
    Counters,
    Exchange,
    ExchangeCounts,
)
from ratefuse.redis._node_breakers import NodeBreakers, NodePermits
from ratefuse.redis._schema import DEFAULT_PREFIX, Subject
from ratefuse.redis._slots import SHARDS, Address, SlotMap, shards_unavailable

ClientT = TypeVar("ClientT")
TransportT = TypeVar("TransportT")
BackendT = TypeVar("BackendT", bound="BackendCore[Any, Any]")
ClosingT = TypeVar("ClosingT", bound="Closing")
AsyncClosingT = TypeVar("AsyncClosingT", bound="AsyncClosing")

# The keys and costs of a batch (costs None: 1 each).
Keys = Sequence[Subject]
Costs = Sequence[int] | None


class BackendCore(Generic[ClientT, TransportT]):
    """`BackendCore` is a Redis backend without its I/O (see
    :class:`._sync.RedisBackendIO` for the arguments). A subclass opens the
    connections (`_connect`) and gives the lock that serialises slot map
    refreshes (`_new_lock`)."""

    def __init__(
        self,
        client: ClientT,
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
        self.breaker = (
            default_breaker("redis", self.timeout) if breaker is None else breaker
        )
        self._breakers = NodeBreakers(self.breaker)
        self._transport, self._seeds = self._connect(client, self.timeout)
        self.cluster = bool(self._seeds)
        tls = bool(getattr(self._transport, "tls", False))
        self._slots = SlotMap(tls) if self.cluster else None
        self._counters = Counters()
        self._eviction = EvictionCheck(self._counters)
        self._refresh_lock = self._new_lock()

    def _connect(
        self, client: ClientT, timeout: float
    ) -> tuple[TransportT, list[Address]]:
        # The transport over ``client``'s settings and the cluster's seed
        # addresses (empty for one node).
        raise NotImplementedError

    def _new_lock(self) -> Any:
        raise NotImplementedError

    def _binding(self, specs: Sequence[Any], name: str) -> Binding:
        # What `bind` binds: raises ValueError for limits the scripts
        # cannot decide exactly.
        return Binding(specs, name, self.prefix, self.namespace)

    def stats(self) -> ExchangeCounts:
        """`stats` snapshots the backend's counters."""
        return self._counters.snapshot()

    def node_breakers(self) -> dict[str, CircuitBreaker]:
        """`node_breakers` maps ``host:port`` to the breaker of each cluster
        node sent to so far; empty for a single Redis, whose breaker is
        `breaker`."""
        return self._breakers.nodes()

    def _admit(self) -> Permit:
        # The single node's permit for one request; CircuitOpenError when
        # its breaker is open.
        permit = self.breaker.try_acquire()
        if permit is None:
            self._counters.add("breaker_rejections")
            raise self.breaker.open_error()
        return permit

    def _short(
        self, packer: Packer, reply: object, cost: int, permit: Permit
    ) -> RawReply | None:
        # The verdict of a single decision's ``reply`` when it is one (an
        # integer, or two to five integers, read by the packer), the
        # request then settled; None for anything else (an error reply, a
        # transport error, a reply no script gives).
        if type(reply) is int or (type(reply) is list and 2 <= len(reply) <= 5):
            try:
                raw = packer.decode(reply, cost)
            except (ValueError, TypeError):
                return None  # the Exchange fails it as unreadable
            self._counters.add_round(1)
            permit.on_success(0.0)
            return raw
        return None

    @staticmethod
    def _settle(permit: Permit, rounds: Exchange) -> list[Any]:
        # Reports a finished single-node request to its breaker (a failure
        # if its exchange saw one) and returns its outcomes.
        failure = rounds.failures.get(None)
        if failure is None:
            permit.on_success(0.0)
        else:
            permit.on_error(0.0, failure)
        return rounds.outcomes

    @staticmethod
    def _abandon(permit: Permit, error: BaseException) -> None:
        # Reports a single-node request that ``error`` interrupted: an
        # error counts against Redis, an interruption (KeyboardInterrupt,
        # cancellation, the caller's deadline) only gives the permit back.
        if isinstance(error, Exception) and not isinstance(error, DeadlineExceeded):
            permit.on_error(0.0, error)
        else:
            permit.release()

    def _permits(self) -> NodePermits:
        # The permits of one request, taken node by node as it sends.
        return NodePermits(self._breakers, self._counters)

    def _ask_node(self, address: Address) -> Permit | CircuitOpenError:
        # The permit to send a command of our own (CLUSTER SHARDS) to the
        # node at ``address``, or its breaker's error when open.
        breaker = self._breakers.get(address)
        permit = breaker.try_acquire()
        if permit is None:
            return breaker.open_error()
        return permit

    def _refresh_steps(self, slots: SlotMap) -> Generator[Address | None, object, None]:
        # The slot map's refresh: yields each node to ask ``slots.command``
        # (CLUSTER SHARDS, or SLOTS), in turn, and receives its reply (or
        # the exception that ended it) until one serves, then yields None;
        # raises BackendError when none did. A node that cannot answer
        # SHARDS is asked again with SLOTS, and so is every later refresh.
        failures: list[Exception] = []
        for address in dict.fromkeys(slots.addresses() + self._seeds):
            reply = yield address
            if slots.command == SHARDS and shards_unavailable(reply):
                slots.fall_back()
                reply = yield address
            try:
                if isinstance(reply, Exception):
                    raise reply
                slots.update(reply, address)
            except Exception as exc:
                failures.append(exc)
                continue
            self._counters.add("slot_map_refreshes")
            yield None
            return
        if all(isinstance(failure, CircuitOpenError) for failure in failures):
            # Every node's breaker is open: fail fast, as a breaker does.
            raise failures[-1]
        command = " ".join(slots.command)
        raise BackendError(f"no cluster node answered {command}: {failures[-1]}")

    @staticmethod
    def _reset_failed(error: Exception) -> NoReturn:
        # Raises what deleting a key that met ``error`` raises: a
        # BackendError as is, anything else as the BackendError it caused.
        if isinstance(error, BackendError):
            raise error
        raise BackendError(f"Redis could not reset the key: {error}") from error


class StoreCore(Generic[BackendT]):
    """`StoreCore` is one limiter's store without its I/O: the backend and
    the binding (see :class:`._sync.RedisStore`)."""

    def __init__(self, backend: BackendT, binding: Binding) -> None:
        self.backend = backend
        self.binding = binding

    def _single(self, key: Subject, cost: int, now_us: int | None) -> Call:
        return self.binding.single(key, cost, now_us, self.backend.cluster)

    def _plan(self, keys: Keys, costs: Costs, now_us: int | None) -> list[Call]:
        backend = self.backend
        return self.binding.plan(keys, costs, now_us, backend.cluster, backend.chunk)

    @staticmethod
    def _only(outcomes: list[Any]) -> Any:
        # The outcome of a one-call request: its reply, or its error raised.
        outcome = outcomes[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


class Closing:
    """`Closing` makes ``with owner:`` call ``owner.close()`` on the way
    out."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self: ClosingT) -> ClosingT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncClosing:
    """`AsyncClosing` makes ``async with owner:`` await ``owner.aclose()``
    on the way out."""

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: AsyncClosingT) -> AsyncClosingT:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
