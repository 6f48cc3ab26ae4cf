"""`Binding`: one limiter's limits bound to the Redis schema. Pure, shared by
the sync and asyncio stores: validation, keys, packing and decoding."""

from __future__ import annotations

import operator
from collections.abc import Sequence

from ratefuse.core.args import check_cost
from ratefuse.core.spec import LimitSpec
from ratefuse.engine.subject import Decision
from ratefuse.redis._codec import Packer, RawReply, to_decision, to_decisions
from ratefuse.redis._exchange import Call, plan_calls, plan_deferred, single_call
from ratefuse.redis._schema import KeySchema, Subject, check_subjects
from ratefuse.redis._scripts import script
from ratefuse.redis._wire_limits import MAX_NOW_US, to_wire_limits


def check_now_us(now_us: int | None) -> int | None:
    """`check_now_us` returns ``now_us`` (None: the server's TIME) or raises
    ValueError outside [0, 2**52]. An explicit time is for tests: keys then
    expire by that clock too (PEXPIREAT), so it should be in the future."""
    if now_us is None:
        return None
    now_us = operator.index(now_us)
    if not 0 <= now_us <= MAX_NOW_US:
        raise ValueError(f"now_us must be in [0, 2**52], got {now_us}")
    return now_us


class Binding:
    """`Binding` holds what one limiter needs to talk to the scripts.

    Raises ValueError at construction for limits the scripts cannot decide
    exactly (see :func:`._wire_limits.to_wire_limit`) and for a bad prefix or
    name. Immutable and thread-safe.
    """

    __slots__ = ("_clamp", "capacities", "packer", "schema", "specs", "wire_limits")

    def __init__(
        self, specs: Sequence[LimitSpec], name: str, prefix: str, namespace: str
    ) -> None:
        self.specs = tuple(specs)
        self.wire_limits = to_wire_limits(self.specs)
        algorithm = self.specs[0].algorithm
        self.schema = KeySchema(prefix, namespace, name, algorithm)
        self.packer = Packer(script(algorithm), self.wire_limits)
        self.capacities = self.packer.capacities
        # Any cost above every capacity decides alike (never admitted), so
        # huge costs are clamped to stay exact in Lua's doubles.
        self._clamp = max(self.capacities) + 1

    def cost(self, cost: int) -> int:
        """`cost` validates ``cost`` as the local engine does and clamps it."""
        return min(check_cost(cost), self._clamp)

    def single(
        self, subject: Subject, cost: int, now_us: int | None, slotted: bool
    ) -> Call:
        """`single` is the call deciding ``cost`` for ``subject``."""
        key = self.schema.key(subject)
        return single_call(
            self.packer, key, self.cost(cost), check_now_us(now_us), slotted
        )

    def plan(
        self,
        subjects: Sequence[Subject],
        costs: Sequence[int] | None,
        now_us: int | None,
        slotted: bool,
        chunk: int,
    ) -> list[Call]:
        """`plan` is the calls deciding ``costs[i]`` (None: 1 each) for
        ``subjects[i]``; raises ValueError if the lengths differ."""
        if costs is None:
            units = [1] * len(subjects)
        else:
            units = [self.cost(cost) for cost in costs]
            if len(units) != len(subjects):
                raise ValueError(
                    f"costs must match keys: {len(units)} costs for "
                    f"{len(subjects)} keys"
                )
        now_us = check_now_us(now_us)
        if not slotted:
            # One node: keys are hashed call by call as the calls go out.
            check_subjects(subjects)
            return plan_deferred(
                self.packer, subjects, self.schema.keys, units, now_us, chunk
            )
        keys = self.schema.keys(subjects)
        return plan_calls(self.packer, keys, units, now_us, slotted, chunk)

    def decision(self, reply: RawReply) -> Decision:
        """`decision` is ``reply`` as a public Decision."""
        return to_decision(reply, self.capacities)

    def decisions(self, replies: list[RawReply]) -> list[Decision]:
        """`decisions` are ``replies`` (one call's) as public Decisions."""
        return to_decisions(replies, self.capacities)
