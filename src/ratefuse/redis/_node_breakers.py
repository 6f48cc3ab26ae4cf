"""A breaker per Redis node, and the permits one request holds.

A Redis Cluster fails a node at a time: one dead primary must cost the
keys of its slots, not every key. `NodeBreakers` gives each node its own
:class:`ratefuse.breaker.CircuitBreaker`, made from the backend's breaker
(its rules and clock); a single Redis uses the backend's breaker itself.
`NodePermits` takes, round by round, the permit of each node a request
sends to, fails the calls of a node whose breaker is open (without I/O)
and reports each node's outcome to its own breaker.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ratefuse.breaker import CircuitBreaker, Permit
from ratefuse.core.errors import DeadlineExceeded
from ratefuse.redis._exchange import Counters, Plan
from ratefuse.redis._slots import Address

if TYPE_CHECKING:
    from ratefuse.redis._exchange import Exchange


def node_name(address: Address | None) -> str:
    """`node_name` is ``host:port`` of ``address`` ("node" for the single
    Redis, whose address is its client's)."""
    return "node" if address is None else f"{address[0]}:{address[1]}"


class NodeBreakers:
    """`NodeBreakers` is the breaker of each node: ``template`` itself for
    the single Redis (address None), and for each cluster node a breaker
    with ``template``'s config and clock, named ``<template>@host:port``,
    made when the node is first sent to. Thread-safe."""

    def __init__(self, template: CircuitBreaker) -> None:
        self.template = template
        self._nodes: dict[Address, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def get(self, address: Address | None) -> CircuitBreaker:
        """`get` is the breaker of the node at ``address``."""
        if address is None:
            return self.template
        breaker = self._nodes.get(address)
        if breaker is None:
            with self._lock:
                breaker = self._nodes.get(address)
                if breaker is None:
                    template = self.template
                    breaker = CircuitBreaker(
                        f"{template.name}@{node_name(address)}",
                        template.config,
                        clock=template.clock,
                    )
                    self._nodes[address] = breaker
        return breaker

    def nodes(self) -> dict[str, CircuitBreaker]:
        """`nodes` maps ``host:port`` to the breaker of each cluster node
        sent to so far (empty for a single Redis)."""
        with self._lock:
            return {node_name(address): b for address, b in self._nodes.items()}


class NodePermits:
    """`NodePermits` is the permits one request holds, one per node it
    sent to. Not shared between threads."""

    __slots__ = ("_breakers", "_counters", "_held")

    def __init__(self, breakers: NodeBreakers, counters: Counters) -> None:
        self._breakers = breakers
        self._counters = counters
        self._held: dict[Address | None, Permit] = {}

    def admit(self, plan: Plan, exchange: Exchange) -> Plan:
        """`admit` is ``plan`` without the nodes whose breaker is open: their
        calls fail at once with the breaker's CircuitOpenError."""
        held = self._held
        admitted: Plan = []
        for address, calls in plan:
            if address not in held:
                breaker = self._breakers.get(address)
                permit = breaker.try_acquire()
                if permit is None:
                    self._counters.add("breaker_rejections")
                    error = breaker.open_error()
                    for call in calls:
                        exchange.reject(call, error)
                    continue
                held[address] = permit
            admitted.append((address, calls))
        return admitted

    def settle(self, exchange: Exchange) -> None:
        """`settle` reports each node's outcome to its breaker: a failure
        if ``exchange`` saw one on that node, else a success."""
        failures = exchange.failures
        for address, permit in self._held.items():
            failure = failures.get(address)
            if failure is None:
                permit.on_success(0.0)
            else:
                permit.on_error(0.0, failure)
        self._held.clear()

    def abandon(self, error: BaseException) -> None:
        """`abandon` reports a request that ``error`` interrupted: an error
        counts against every node it was sent to, an interruption
        (KeyboardInterrupt, cancellation, the caller's deadline) only gives
        the permits back."""
        for permit in self._held.values():
            if isinstance(error, Exception) and not isinstance(error, DeadlineExceeded):
                permit.on_error(0.0, error)
            else:
                permit.release()
        self._held.clear()
