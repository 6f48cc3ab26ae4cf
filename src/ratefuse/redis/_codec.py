"""Argument packing and reply decoding for the scripts: pure, no I/O.

Commands are packed straight into RESP bytes (EVALSHA with pre-packed limit
arguments, or FCALL of the Functions library with its limits as one
string), which costs a fraction of redis-py's generic packer per call.
One key goes out with plain arguments and comes back as five integers,
or, from a lean decider (one limit of gcra, a window or the sliding log,
two gcra limits on FCALL: lua/lean.lua, lua/lean_<algorithm>.lua), as one
integer (or 24 bytes, or two) that
:mod:`._lean` turns into the same five: a reply table costs the server
more than the decision's arithmetic. A group of keys sends its costs as
one msgpack array and gets one msgpack array back, which beats thousands
of RESP integers both ways.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, NamedTuple

import msgpack  # type: ignore[import-untyped, unused-ignore]

from ratefuse.core.spec import NEVER
from ratefuse.engine.subject import Decision
from ratefuse.redis._lean import LeanLimit, LeanPair, entry_format
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


# Pieces of a single decision's call, packed ahead of time: %-formatting
# bytes was a tenth of a sequential decision's client instructions. Keys
# are shorter than 256 bytes (the schema's are about 60), costs mostly
# small, and the time is the server's (-1) but in tests.
_BULK_LENGTHS: Final = tuple(b"$%d\r\n" % size for size in range(256))
_SMALL_INTEGERS: Final = tuple(_bulk(b"%d" % number) for number in range(256))
_SERVER_NOW: Final = b"\r\n" + _bulk(b"-1")
_STEP_MODE: Final = _bulk(b"s")


def _ones(count: int) -> bytes:
    # msgpack's array of ``count`` ones (a batch's costs when none is
    # given), without packing each: its header, then one byte per 1.
    if count < 16:
        header = bytes((0x90 | count,))
    elif count < 1 << 16:
        header = b"\xdc" + count.to_bytes(2, "big")
    else:
        header = b"\xdd" + count.to_bytes(4, "big")
    return header + b"\x01" * count


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
            self._lean_head = b"*10\r\n$7\r\nEVALSHA\r\n$40\r\n%s\r\n$1\r\n1\r\n" % (
                script.lean.sha
            )
            span = (
                lean.interval_us if self._lean.algorithm == "gcra" else lean.period_us
            )
            field = lean.field.encode()
            self._lean_tail = b"".join(
                _bulk(arg)
                for arg in (
                    field,
                    b"%d" % lean.capacity,
                    b"%d" % span,
                    entry_format(field, self._lean.algorithm),
                )
            )

    def fcall(self, key: bytes, cost: int, now_us: int | None) -> bytes:
        """`fcall` packs one key's call of the library function (only when
        `functions`); the reply is five integers."""
        size = len(key)
        return b"".join(
            (
                self._fcall_head,
                _BULK_LENGTHS[size] if size < 256 else b"$%d\r\n" % size,
                key,
                _SERVER_NOW if now_us is None else b"\r\n" + _bulk(b"%d" % now_us),
                _SMALL_INTEGERS[cost] if cost < 256 else _bulk(b"%d" % cost),
                self._fcall_tail,
            )
        )

    def single(self, key: bytes, cost: int, now_us: int | None) -> bytes:
        """`single` packs one key's EVALSHA of `single_script`: the lean
        script's (one integer or five) or the exact script's (five)."""
        size = len(key)
        now = _SERVER_NOW if now_us is None else b"\r\n" + _bulk(b"%d" % now_us)
        units = _SMALL_INTEGERS[cost] if cost < 256 else _bulk(b"%d" % cost)
        length = _BULK_LENGTHS[size] if size < 256 else b"$%d\r\n" % size
        if self._lean is not None:
            return b"".join((self._lean_head, length, key, now, units, self._lean_tail))
        return b"".join(
            (self._single_head, length, key, now, _STEP_MODE, units, self._tail)
        )

    def batch(
        self,
        keys: Sequence[bytes],
        costs: list[int],
        now_us: int | None,
        distinct: bool | None = None,
    ) -> bytes:
        """`batch` packs one call for ``keys`` (all one slot, all the same
        length); the reply is a msgpack array of 5 integers per key.
        ``distinct``: whether no key repeats, when the caller knows (None:
        found here)."""
        count = b"%d" % len(keys)
        if distinct is None:
            distinct = len(set(keys)) == len(keys)
        # Distinct keys spare the script tracking repeated ones ("u").
        mode = b"$1\r\nu\r\n" if distinct else b"$1\r\nm\r\n"
        now = b"-1" if now_us is None else b"%d" % now_us
        blob = (
            _ones(len(costs)) if costs.count(1) == len(costs) else msgpack.packb(costs)
        )
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
        lean = self._lean
        if lean is not None and (type(reply) is int or type(reply) is bytes):
            raw = lean.verdict(reply, cost)
            if raw[1] < 0 or raw[2] < NEVER or raw[3] < 0:
                check_reply(raw)
            return raw
        pair = self._pair
        if pair is not None and (
            type(reply) is int or (isinstance(reply, list) and len(reply) == 2)
        ):
            raw = pair.verdict(reply, cost)
            if raw[1] < 0 or raw[2] < NEVER or raw[3] < 0:
                check_reply(raw)
            return raw
        return decode_single(reply)


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
    """`decode_batch` reads ``count`` replies from a msgpack reply: groups
    of 5 integers, each a verdict, or (-n, 0, 0, 0, 0): the previous
    verdict n more times (see batch.lua)."""
    if not isinstance(reply, bytes):
        raise ValueError(f"unexpected script reply {reply!r}")
    try:
        flat = msgpack.unpackb(reply)
    except Exception as exc:  # msgpack raises several types for bad bytes
        raise ValueError(f"undecodable script reply: {exc!r}") from None
    if not isinstance(flat, list):
        raise ValueError(f"script replied {flat!r:.60} for {count} keys")
    if len(flat) % 5:
        raise ValueError(f"script replied {len(flat)} integers for {count} keys")
    items = iter(flat)
    groups: list[RawReply] = list(zip(items, items, items, items, items, strict=True))
    if len(groups) != count:
        if not groups or min(flat[0::5]) >= 0:
            raise ValueError(f"script replied {len(flat)} integers for {count} keys")
        groups = _expand(groups, count)
    # Only retry_after may be negative (NEVER): one pass over the whole
    # reply, and the fields one by one only if something is.
    elif (
        count
        and min(flat) < 0
        and (
            min(flat[2::5]) < NEVER
            or min(flat[0::5] + flat[1::5] + flat[3::5] + flat[4::5]) < 0
        )
    ):
        for group in groups:
            check_reply(group)
    return groups


def _expand(groups: list[RawReply], count: int) -> list[RawReply]:
    # The verdicts of ``groups`` with their runs of repeats, each verdict
    # checked; a run is the same tuple, repeated.
    verdicts: list[RawReply] = []
    for group in groups:
        repeats = group[0]
        if repeats < 0:
            if not verdicts or group[1:] != (0, 0, 0, 0):
                raise ValueError(f"script replied a run {group!r} out of place")
            verdicts.extend([verdicts[-1]] * -repeats)
        else:
            if min(group) < 0 and (group[2] < NEVER or min(group[:2] + group[3:]) < 0):
                check_reply(group)
            verdicts.append(group)
    if len(verdicts) != count:
        raise ValueError(f"script replied {len(verdicts)} verdicts for {count} keys")
    return verdicts


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
    loop: a call per reply is a measurable share of a batch's CPU). A
    call whose last two replies are one tuple ends in a run of repeats
    (see `decode_batch`), as a batch of fresh keys does: each distinct
    tuple then makes one Decision, shared by its repeats (Decisions are
    immutable)."""
    never, inf = NEVER, math.inf
    if len(raws) > 1 and raws[-1] is raws[-2]:
        decisions = []
        last_raw: RawReply | None = None
        last: Decision | None = None
        for raw in raws:
            if raw is not last_raw:
                allowed, remaining, retry, reset, binding = raw
                last = Decision(
                    allowed == 1,
                    remaining,
                    inf if retry == never else float(retry) / 1e6,
                    float(reset) / 1e6,
                    capacities[binding],
                )
                last_raw = raw
            decisions.append(last)
        return decisions  # type: ignore[return-value]
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
