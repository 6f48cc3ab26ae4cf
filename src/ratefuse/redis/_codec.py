"""Argument packing and reply decoding for the scripts: pure, no I/O.

Commands are packed straight into RESP bytes (EVALSHA with pre-packed limit
arguments, or FCALL of the Functions library with its limits as one
string), which costs a fraction of redis-py's generic packer per call.
One key goes out with plain arguments and comes back as five integers; a
group of keys sends its costs as one msgpack array and gets one msgpack
array back, which beats thousands of RESP integers both ways.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, NamedTuple

import msgpack  # type: ignore[import-untyped, unused-ignore]

from ratefuse.core.spec import NEVER
from ratefuse.engine.subject import Decision
from ratefuse.redis._scripts import Library, Script
from ratefuse.redis._wire_limits import WireLimit

ASKING: Final = b"*1\r\n$6\r\nASKING\r\n"


# A reply as decoded: the five integers of a ScriptReply, a plain tuple
# (building ScriptReplies costs more than the whole decode).
RawReply = tuple[int, int, int, int, int]


class ScriptReply(NamedTuple):
    """`ScriptReply` is a script's answer for one subject, in integer
    microseconds: ``retry_after_us`` is -1 (NEVER) when the cost exceeds a
    capacity; ``binding`` indexes the limit that applied."""

    allowed: bool
    remaining: int
    retry_after_us: int
    reset_after_us: int
    binding: int

    @classmethod
    def of(cls, raw: RawReply) -> ScriptReply:
        """`of` is ``raw`` as a ScriptReply."""
        return cls(raw[0] == 1, raw[1], raw[2], raw[3], raw[4])

    @classmethod
    def of_each(cls, raws: list[RawReply]) -> list[ScriptReply]:
        """`of_each` is `of` of each reply (a call's)."""
        return [cls(raw[0] == 1, raw[1], raw[2], raw[3], raw[4]) for raw in raws]


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def pack_command(*args: object) -> bytes:
    """`pack_command` packs a command of str, bytes and int arguments."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode()
        elif isinstance(arg, int):
            arg = b"%d" % arg
        parts.append(_bulk(arg))  # type: ignore[arg-type]
    return b"".join(parts)


def script_load(script: Script) -> bytes:
    """`script_load` is the packed ``SCRIPT LOAD`` of ``script``."""
    return b"*3\r\n$6\r\nSCRIPT\r\n$4\r\nLOAD\r\n" + _bulk(script.source)


def function_load(library: Library) -> bytes:
    """`function_load` is the packed ``FUNCTION LOAD REPLACE`` of
    ``library``."""
    return pack_command("FUNCTION", "LOAD", "REPLACE", library.source)


class Packer:
    """`Packer` packs EVALSHA calls of ``script`` for one limiter's limits,
    and FCALLs of its library function when it has one (`functions`).

    Keys are the schema's fixed-length bytes keys; costs are ints in
    [0, 2**53); ``now_us`` None reads the server's TIME. Immutable.
    """

    __slots__ = (
        "_batch_argc",
        "_fcall_head",
        "_fcall_tail",
        "_lean",
        "_lean_head",
        "_lean_tail",
        "_pair",
        "_single_head",
        "_tail",
        "capacities",
        "functions",
        "script",
        "single_script",
    )

    def __init__(self, script: Script, specs: Sequence[WireLimit]) -> None:
        self.script = script
        self.capacities = tuple(spec.capacity for spec in specs)
        tail = [_bulk(b"%d" % len(specs))]
        for spec in specs:
            tail.append(_bulk(spec.field.encode()))
            for number in (spec.capacity, spec.period_us, spec.interval_us):
                tail.append(_bulk(b"%d" % number))
        self._tail = b"".join(tail)
        argc = 1 + 4 * len(specs)
        # EVALSHA sha numkeys, then now, mode, cost(s), the limits.
        self._single_head = b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n" % (
            3 + 1 + 3 + argc,
            script.sha,
        )
        self._batch_argc = 3 + 3 + argc
        # FCALL function 1 key now cost limits: the limits are their ids
        # (the library parses them once per distinct string).
        self.functions = script.function is not None
        function = script.function or b""
        self._fcall_head = b"*7\r\n$5\r\nFCALL\r\n%s$1\r\n1\r\n" % _bulk(function)
        self._fcall_tail = _bulk(" ".join(spec.field for spec in specs).encode())
        # One limit of an algorithm with a lean decider: single decisions
        # on EVALSHA go to its lean script, and both paths may reply one
        # integer (see LeanLimit).
        self._lean = LeanLimit.of(script.algorithm, specs) if script.lean else None
        self.single_script = script
        # Two gcra limits: the library may reply LeanPair's form (FCALL).
        self._pair = LeanPair.of(script.algorithm, specs) if script.lean else None
        if self._lean is not None and script.lean is not None:
            self.single_script = script.lean
            lean = specs[0]
            self._lean_head = b"*9\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n" % (
                script.lean.sha
            )
            span = (
                lean.interval_us if self._lean.algorithm == "gcra" else lean.period_us
            )
            self._lean_tail = b"".join(
                _bulk(arg)
                for arg in (lean.field.encode(), b"%d" % lean.capacity, b"%d" % span)
            )

    def fcall(self, key: bytes, cost: int, now_us: int | None) -> bytes:
        """`fcall` packs one key's call of the library function (only when
        `functions`); the reply is five integers."""
        now = b"-1" if now_us is None else b"%d" % now_us
        units = b"%d" % cost
        return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (
            self._fcall_head,
            len(key),
            key,
            len(now),
            now,
            len(units),
            units,
            self._fcall_tail,
        )

    def single(self, key: bytes, cost: int, now_us: int | None) -> bytes:
        """`single` packs one key's EVALSHA of `single_script`: the lean
        script's (one integer or five) or the exact script's (five)."""
        now = b"-1" if now_us is None else b"%d" % now_us
        units = b"%d" % cost
        if self._lean is not None:
            return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (
                self._lean_head,
                len(key),
                key,
                len(now),
                now,
                len(units),
                units,
                self._lean_tail,
            )
        return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n$1\r\ns\r\n$%d\r\n%s\r\n%s" % (
            self._single_head,
            len(key),
            key,
            len(now),
            now,
            len(units),
            units,
            self._tail,
        )

    def batch(
        self, keys: Sequence[bytes], costs: list[int], now_us: int | None
    ) -> bytes:
        """`batch` packs one call for ``keys`` (all one slot, all the same
        length); the reply is a msgpack array of 5 integers per key."""
        count = b"%d" % len(keys)
        # Distinct keys spare the script tracking repeated ones ("u").
        mode = b"$1\r\nu\r\n" if len(set(keys)) == len(keys) else b"$1\r\nm\r\n"
        now = b"-1" if now_us is None else b"%d" % now_us
        blob = msgpack.packb(costs)
        size = b"$%d\r\n" % len(keys[0])
        return b"".join(
            (
                b"*%d\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n"
                % (self._batch_argc + len(keys), self.script.sha),
                _bulk(count),
                size,
                (b"\r\n" + size).join(keys),
                b"\r\n",
                _bulk(now),
                mode,
                _bulk(blob),
                self._tail,
            )
        )

    def decode(self, reply: object, cost: int) -> RawReply:
        """`decode` reads a single decision's reply to ``cost``: a lean
        decider's integer, or five integers (`decode_single`)."""
        pair = self._pair
        if pair is not None and (
            type(reply) is int or (isinstance(reply, list) and len(reply) == 2)
        ):
            raw = pair.verdict(reply, cost)
            if raw[1] < 0 or raw[2] < NEVER or raw[3] < 0:
                check_reply(raw)
            return raw
        lean = self._lean
        if lean is not None and (
            type(reply) is int or (isinstance(reply, list) and len(reply) == 3)
        ):
            raw = lean.verdict(reply, cost)
            if raw[1] < 0 or raw[2] < NEVER or raw[3] < 0:
                check_reply(raw)
            return raw
        return decode_single(reply)


class LeanLimit(NamedTuple):
    """`LeanLimit` rebuilds the verdict of a lean decider (lua/lean.lua)
    from its reply, exactly: v >= 0 admitted, else denied with payload
    -v - 1. gcra's payload is the backlog (reset_after); a fixed window's
    window_end * (capacity + 1) + count; a sliding window's
    (e * (capacity + 1) + prev) * (capacity + 1) + cur, or the three
    integers {e or -e - 1, prev, cur} where that would reach 2**53."""

    algorithm: str
    capacity: int
    span: int

    @classmethod
    def of(cls, algorithm: str, specs: Sequence[WireLimit]) -> LeanLimit | None:
        """`of` is the LeanLimit of one limit (None: several limits, or
        a fixed window whose payload could reach 2**53, which the library
        then decides on its general path)."""
        if len(specs) != 1:
            return None
        spec = specs[0]
        if algorithm == "gcra":
            return cls(algorithm, spec.capacity, spec.interval_us)
        if (
            algorithm == "fixed_window"
            and (2 * spec.period_us + 1) * (spec.capacity + 1) >= 1 << 53
        ):
            return None
        return cls(algorithm, spec.capacity, spec.period_us)

    def verdict(self, reply: object, cost: int) -> RawReply:
        """`verdict` is the five integers of the general scripts' verdict
        for ``reply`` to ``cost``; ValueError for a reply no lean decider
        gives."""
        capacity = self.capacity
        if type(reply) is not int:
            if self.algorithm != "sliding_window" or not isinstance(reply, list):
                raise ValueError(f"unexpected script reply {reply!r}")
            signed, prev, cur = reply
            allowed = signed >= 0
            e = signed if allowed else -signed - 1
        else:
            allowed = reply >= 0
            payload = reply if allowed else -reply - 1
            if self.algorithm == "gcra":
                return self._gcra(allowed, payload, cost)
            if self.algorithm == "fixed_window":
                window_end, count = divmod(payload, capacity + 1)
                retry = 0 if allowed else NEVER if cost > capacity else window_end
                reset = window_end if count else 0
                return (int(allowed), capacity - count, retry, reset, 0)
            rest, cur = divmod(payload, capacity + 1)
            e, prev = divmod(rest, capacity + 1)
        return self._sliding_window(allowed, e, prev, cur, cost)

    def _gcra(self, allowed: bool, backlog: int, cost: int) -> RawReply:
        capacity, interval = self.capacity, self.span
        tau = interval * capacity
        remaining = (tau - backlog) // interval if backlog <= tau else 0
        if allowed:
            retry = 0
        elif cost > capacity:
            retry = NEVER
        else:
            retry = backlog + cost * interval - tau
        return (int(allowed), remaining, retry, backlog, 0)

    def _sliding_window(
        self, allowed: bool, e: int, prev: int, cur: int, cost: int
    ) -> RawReply:
        # As sliding_window.lua's step, from start - now = period - e.
        limit, period = self.capacity, self.span
        ahead = period - e  # start - now
        elapsed = -ahead if ahead < 0 else 0
        weighted_prev = prev * (period - elapsed)
        if allowed:
            retry = 0
        elif cost > limit:
            retry = NEVER
        else:
            retry = _retry_offset(period, limit, cur, prev, cost) + ahead
        remaining = (limit * period - weighted_prev - cur * period) // period
        reset = 0
        if cur > 0:
            reset = ahead + 2 * period
        elif prev > 0:
            reset = ahead + period
        return (int(allowed), max(remaining, 0), retry, reset, 0)


class LeanPair(NamedTuple):
    """`LeanPair` rebuilds the verdict of the library's lean compound of
    two gcra limits (lua/lean.lua's gcra_pair_lean) from the two backlogs
    before the decision: one integer b1 * (2 tau2 + 1) + b2, or the two.
    ``limits`` are (capacity, interval_us) per limit."""

    limits: tuple[tuple[int, int], tuple[int, int]]

    @classmethod
    def of(cls, algorithm: str, specs: Sequence[WireLimit]) -> LeanPair | None:
        """`of` is the LeanPair of two gcra limits (None: anything else)."""
        if algorithm != "gcra" or len(specs) != 2:
            return None
        first, second = specs
        return cls(
            ((first.capacity, first.interval_us), (second.capacity, second.interval_us))
        )

    def verdict(self, reply: object, cost: int) -> RawReply:
        """`verdict` is the five integers of the general scripts' verdict
        for ``reply`` to ``cost``; ValueError for a reply it never gives."""
        capacity2, interval2 = self.limits[1]
        if type(reply) is int:
            backlogs = divmod(reply, 2 * capacity2 * interval2 + 1)
        elif isinstance(reply, list) and len(reply) == 2:
            backlogs = (reply[0], reply[1])
        else:
            raise ValueError(f"unexpected script reply {reply!r}")
        news = [
            backlog + cost * interval
            for backlog, (_, interval) in zip(backlogs, self.limits, strict=True)
        ]
        fits = [
            cost <= capacity and new <= capacity * interval
            for new, (capacity, interval) in zip(news, self.limits, strict=True)
        ]
        allowed = all(fits)
        verdicts = []
        for backlog, new, fit, (capacity, interval) in zip(
            backlogs, news, fits, self.limits, strict=True
        ):
            tau = capacity * interval
            if allowed:
                verdicts.append((True, (tau - new) // interval, 0, new))
                continue
            remaining = (tau - backlog) // interval if backlog <= tau else 0
            retry = 0 if fit else NEVER if cost > capacity else new - tau
            verdicts.append((fit, remaining, retry, backlog))
        return _combine(allowed, verdicts)


def _later(retry: int, than: int) -> bool:
    # compound.lua's later: retry delays ordered with NEVER as the latest.
    if than == NEVER:
        return False
    return retry == NEVER or retry > than


def _combine(allowed: bool, verdicts: list[tuple[bool, int, int, int]]) -> RawReply:
    # compound.lua's combine: the binding limit, the latest retry, the
    # least remaining and the latest reset.
    binding, retry = 0, 0
    remaining, reset = verdicts[0][1], verdicts[0][3]
    for index, verdict in enumerate(verdicts):
        best = verdicts[binding]
        if allowed:
            if verdict[1] < best[1]:
                binding = index
        elif not verdict[0] and (best[0] or _later(verdict[2], best[2])):
            binding = index
        if _later(verdict[2], retry):
            retry = verdict[2]
        remaining = min(remaining, verdict[1])
        reset = max(reset, verdict[3])
    return (int(allowed), remaining, retry, reset, binding)


def _retry_offset(period: int, limit: int, cur: int, prev: int, cost: int) -> int:
    # sliding_window.lua's retry_offset: the offset from the window start
    # at which cost fits (it does not fit now; cost <= limit).
    room = limit - cur - cost
    if room >= 0:
        needed = period - room * period // prev
        if needed < period:
            return needed
    if cur == 0:
        return period
    needed = period - (limit - cost) * period // cur
    return period + max(needed, 0)


def decode_single(reply: object) -> RawReply:
    """`decode_single` reads the five integers of a single-key reply;
    ValueError for a reply no script gives (see `check_reply`)."""
    if not isinstance(reply, list) or len(reply) != 5:
        raise ValueError(f"unexpected script reply {reply!r}")
    raw: RawReply = tuple(reply)
    if raw[0] < 0 or raw[1] < 0 or raw[2] < NEVER or raw[3] < 0 or raw[4] < 0:
        check_reply(raw)
    return raw


def check_reply(raw: Sequence[int]) -> None:
    """`check_reply` raises ValueError, naming the field, for a reply no
    script gives: a negative count, remaining, reset_after or binding, or a
    retry_after below -1 (NEVER). A negative wait would turn acquire into a
    busy loop on Redis; the call fails instead (the failure policy answers),
    which the scripts' own repair of damaged state makes the exception."""
    for field, value, lowest in zip(
        ("allowed", "remaining", "retry_after_us", "reset_after_us", "binding"),
        raw,
        (0, 0, NEVER, 0, 0),
        strict=True,
    ):
        if value < lowest:
            raise ValueError(f"script replied {field}={value}, below {lowest}")


def decode_batch(reply: object, count: int) -> list[RawReply]:
    """`decode_batch` reads ``count`` replies from a msgpack reply."""
    if not isinstance(reply, bytes):
        raise ValueError(f"unexpected script reply {reply!r}")
    try:
        flat = msgpack.unpackb(reply)
    except Exception as exc:  # msgpack raises several types for bad bytes
        raise ValueError(f"undecodable script reply: {exc!r}") from None
    if not isinstance(flat, list):
        raise ValueError(f"script replied {flat!r:.60} for {count} keys")
    if len(flat) != 5 * count:
        raise ValueError(f"script replied {len(flat)} integers for {count} keys")
    # Only retry_after may be negative (NEVER): one pass over the whole
    # reply, and the fields one by one only if something is.
    if (
        count
        and min(flat) < 0
        and (
            min(flat[2::5]) < NEVER
            or min(flat[0::5] + flat[1::5] + flat[3::5] + flat[4::5]) < 0
        )
    ):
        for at in range(0, len(flat), 5):
            check_reply(flat[at : at + 5])
    items = iter(flat)
    return list(zip(items, items, items, items, items, strict=True))


def to_decision(raw: RawReply, capacities: Sequence[int]) -> Decision:
    """`to_decision` turns a reply into the public Decision (float
    seconds; ``inf`` for NEVER; ``limit`` the binding capacity). Every
    single decision comes here: no list around it (`to_decisions` is the
    batch's loop)."""
    allowed, remaining, retry, reset, binding = raw
    return Decision(
        allowed == 1,
        remaining,
        math.inf if retry == NEVER else float(retry) / 1e6,
        float(reset) / 1e6,
        capacities[binding],
    )


def to_decisions(raws: list[RawReply], capacities: Sequence[int]) -> list[Decision]:
    """`to_decisions` is `to_decision` of each reply (a batch's, in one
    loop: a call per reply is a measurable share of a batch's CPU)."""
    never, inf = NEVER, math.inf
    return [
        Decision(
            allowed == 1,
            remaining,
            inf if retry == never else float(retry) / 1e6,
            float(reset) / 1e6,
            capacities[binding],
        )
        for allowed, remaining, retry, reset, binding in raws
    ]
