"""One request's round trips, sans I/O, shared by the sync and asyncio
backends.

`plan_calls` groups a request's decisions into EVALSHA calls (one slot per
call on a cluster). An `Exchange` then plans, round by round, what to send
to which node and receives what each call got back, call by call as the
replies arrive; it decodes replies and decides what to resend:

- NOSCRIPT: the script did not run; ``SCRIPT LOAD`` goes ahead of the call
  on that node (once per node per round) and the call is resent;
- "Function not found" (an FCALL, see :mod:`._script_paths`): ``FUNCTION
  LOAD REPLACE`` goes ahead of the call once, as SCRIPT LOAD does; a node
  that cannot run FCALL gets the call again as EVALSHA;
- MOVED: the slot map is patched and the call goes to the new owner;
- ASK: the call goes once to the importing node behind ``ASKING``;
- TRYAGAIN (a multi-key call during a slot migration): the call is split
  into one call per key and resent.

Nothing else is resent: a transport error or a timeout leaves the outcome
of a consuming call unknown, so it fails that call's decisions and the
limiter's policy answers them. The backends only move bytes.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, fields
from typing import Any

from redis.exceptions import (
    AskError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from ratefuse.core.errors import BackendError
from ratefuse.redis._codec import (
    ASKING,
    Packer,
    RawReply,
    decode_batch,
    function_load,
    script_load,
)
from ratefuse.redis._repair import counts_against_node, is_wrongtype, repair_command
from ratefuse.redis._schema import Subject
from ratefuse.redis._script_paths import ScriptPaths, fcall_refused, function_not_found
from ratefuse.redis._scripts import Script, library
from ratefuse.redis._slots import Address, SlotMap, key_slot

# Rounds of redirection and reloading before a call gives up.
MAX_ROUNDS = 5
# Keys per EVALSHA in a batch: bounds the time one script blocks the server
# (about 1 ms here), and lets a single node run one call while the client
# packs the next and decodes the previous (calls are streamed, see the
# transports). 100, 125 and 500 measured no faster, interleaved with it
# (benchmarks/redis_batch_interleaved.py --compare).
DEFAULT_CHUNK = 250


@dataclass
class ExchangeCounts:
    """`ExchangeCounts` is a snapshot of a backend's counters: round trips
    and calls sent, and how often each recovery happened."""

    round_trips: int = 0
    calls: int = 0
    # SCRIPT LOADs sent after NOSCRIPT (one per node and round).
    noscript_reloads: int = 0
    # FUNCTION LOADs sent after "Function not found" (one per node and
    # round; see _script_paths).
    function_loads: int = 0
    moved: int = 0
    ask: int = 0
    tryagain: int = 0
    transport_errors: int = 0
    timeouts: int = 0
    slot_map_refreshes: int = 0
    breaker_rejections: int = 0
    # Error replies to calls (OOM, BUSY, WRONGTYPE, ...), redirections and
    # NOSCRIPT aside.
    error_replies: int = 0
    # Repairs sent for calls that met a key of the wrong type (someone
    # overwrote it): the repair deletes it, so that the limit starts afresh.
    wrongtype_repairs: int = 0
    # Nodes whose maxmemory-policy can evict limiter keys (see _eviction).
    evicting_nodes: int = 0
    # Nodes that refused CONFIG GET: their eviction policy is unknown.
    unchecked_nodes: int = 0


class Counters:
    """`Counters` accumulates ExchangeCounts; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = ExchangeCounts()

    def add(self, name: str, amount: int = 1) -> None:
        """`add` adds ``amount`` to the counter ``name``."""
        with self._lock:
            setattr(self._counts, name, getattr(self._counts, name) + amount)

    def add_round(self, calls: int) -> None:
        """`add_round` counts one round trip of ``calls`` calls."""
        counts = self._counts
        with self._lock:
            counts.round_trips += 1
            counts.calls += calls

    def snapshot(self) -> ExchangeCounts:
        """`snapshot` copies the counters."""
        with self._lock:
            return ExchangeCounts(
                **{
                    field.name: getattr(self._counts, field.name)
                    for field in fields(self._counts)
                }
            )


class Call:
    """`Call` is one EVALSHA (or, for one key, FCALL: `choose`): the
    decisions of ``keys`` (one slot) at ``positions`` of the request.
    ``load``, ``load_function`` and ``ask`` put SCRIPT LOAD, FUNCTION LOAD
    and ASKING ahead of it on the wire. Not shared between threads.

    A call may instead get its ``subjects`` and ``keys_of`` (validated
    subjects and the schema's keys function): its keys are then computed,
    and the call packed, when it is first put on the wire, so that a
    transport streaming a batch call by call hashes the next call's keys
    while the server runs the previous one.
    """

    __slots__ = (
        "_keys",
        "_keys_of",
        "_packed",
        "_packed_fcall",
        "_packer",
        "_subjects",
        "ask",
        "costs",
        "evalsha_only",
        "fcall",
        "function_loaded",
        "load",
        "load_function",
        "node",
        "now_us",
        "paths",
        "positions",
        "repair",
        "repaired",
        "single",
        "slot",
    )

    def __init__(
        self,
        packer: Packer,
        slot: int,
        positions: list[int],
        keys: list[bytes] | None,
        costs: list[int],
        now_us: int | None,
        subjects: Sequence[Subject] | None = None,
        keys_of: Callable[[Sequence[Subject]], list[bytes]] | None = None,
    ) -> None:
        self.slot = slot
        self.positions = positions
        self._keys = keys
        self._subjects = subjects
        self._keys_of = keys_of
        self.costs = costs
        self.now_us = now_us
        self.single = len(positions) == 1
        self._packer = packer
        self._packed: bytes | None = None
        self._packed_fcall = False
        # Whether it goes out as FCALL (see `choose`), whether a FUNCTION
        # LOAD went ahead of it once, whether it must stay on EVALSHA (its
        # node could not run it as FCALL, or answered NOSCRIPT), and the
        # paths of the transport that sent it (None: never sent).
        self.fcall = False
        self.function_loaded = False
        self.evalsha_only = False
        self.paths: ScriptPaths | None = None
        self.load = False
        self.load_function = False
        self.ask: Address | None = None
        # Whether a repair of wrong-typed keys goes ahead of it, and whether
        # one ever did (a call is repaired once).
        self.repair = False
        self.repaired = False
        # The node the call was last sent to (None: the single Redis).
        self.node: Address | None = None

    @property
    def keys(self) -> list[bytes]:
        """`keys` are the call's Redis keys, in the order of ``positions``."""
        keys = self._keys
        if keys is None:
            assert self._subjects is not None
            assert self._keys_of is not None
            keys = self._keys = self._keys_of(self._subjects)
        return keys

    def choose(self, paths: ScriptPaths, address: Address | None) -> None:
        """`choose` sets whether the call goes to ``address`` as FCALL: a
        single decision whose script has a library function, unless the
        node or the call is on EVALSHA (see :mod:`._script_paths`)."""
        self.paths = paths
        self.fcall = (
            self.single
            and not self.evalsha_only
            and self._packer.functions
            and paths.functions(address)
        )

    @property
    def packed(self) -> bytes:
        """`packed` is the call's EVALSHA or FCALL, packed once."""
        packed = self._packed
        fcall = self.fcall
        if packed is None or self._packed_fcall != fcall:
            packer = self._packer
            if fcall:
                packed = packer.fcall(self.keys[0], self.costs[0], self.now_us)
            elif self.single:
                packed = packer.single(self.keys[0], self.costs[0], self.now_us)
            else:
                keys, subjects = self.keys, self._subjects
                # Distinct subjects are distinct keys, and theirs hash
                # cheaper (a str caches its hash; bytes keys are new).
                distinct = None if subjects is None else len(set(subjects)) == len(keys)
                packed = packer.batch(keys, self.costs, self.now_us, distinct)
            self._packed, self._packed_fcall = packed, fcall
        return packed

    @property
    def script(self) -> Script:
        """`script` is the script the call's EVALSHA runs: a single
        decision's (a lean script where its limit has one) or a batch's."""
        packer = self._packer
        return packer.single_script if self.single else packer.script

    def wire(self) -> tuple[list[bytes], int]:
        """`wire` is what to send for this call and how many replies follow
        (the call's own reply is the last)."""
        pieces = []
        if self.repair:
            pieces.append(repair_command(self.keys, self._packer.script))
        if self.load:
            pieces.append(script_load(self.script))
        if self.load_function:
            pieces.append(function_load(library()))
        if self.ask is not None:
            pieces.append(ASKING)
        pieces.append(self.packed)
        return pieces, len(pieces)


class RepairCall(Call):
    """`RepairCall` only deletes the wrong-typed keys of a call that cannot
    be resent (a batch: the keys before the bad one were decided); it
    answers no decision."""

    __slots__ = ()

    def __init__(self, call: Call) -> None:
        super().__init__(call._packer, call.slot, [], call.keys, [], None)
        self.node = call.node

    def wire(self) -> tuple[list[bytes], int]:
        """`wire` is the repair alone."""
        return [repair_command(self.keys, self._packer.script)], 1


def _call(
    packer: Packer,
    slot: int,
    positions: list[int],
    keys: Sequence[bytes],
    costs: Sequence[int],
    now_us: int | None,
) -> Call:
    chosen = [keys[i] for i in positions]
    units = [costs[i] for i in positions]
    return Call(packer, slot, positions, chosen, units, now_us)


def single_call(
    packer: Packer, key: bytes, cost: int, now_us: int | None, slotted: bool
) -> Call:
    """`single_call` is the one call of a one-decision request."""
    return Call(packer, key_slot(key) if slotted else -1, [0], [key], [cost], now_us)


def single_command(
    packer: Packer, paths: ScriptPaths, key: bytes, cost: int
) -> tuple[bool, bytes]:
    """`single_command` is the command of a single decision on the single
    node's clock, without a Call: whether it goes as FCALL (as
    :meth:`Call.choose` decides for a new single call) and the command
    packed."""
    if packer.functions and paths.functions(None):
        return True, packer.fcall(key, cost, None)
    return False, packer.single(key, cost, None)


def _split(packer: Packer, call: Call) -> list[Call]:
    # One call per key, for a multi-key call the server asked to retry.
    return [
        Call(packer, call.slot, [position], [key], [cost], call.now_us)
        for position, key, cost in zip(
            call.positions, call.keys, call.costs, strict=True
        )
    ]


def plan_calls(
    packer: Packer,
    keys: Sequence[bytes],
    costs: Sequence[int],
    now_us: int | None,
    slotted: bool,
    chunk: int = DEFAULT_CHUNK,
) -> list[Call]:
    """`plan_calls` groups decisions into calls: by slot when ``slotted``
    (a cluster), in request order, at most ``chunk`` keys per call. The
    decisions of one key stay in order within one node's pipeline."""
    if not slotted:
        return [
            _call(
                packer,
                -1,
                list(range(start, min(start + chunk, len(keys)))),
                keys,
                costs,
                now_us,
            )
            for start in range(0, len(keys), chunk)
        ]
    groups: dict[int, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key_slot(key), []).append(position)
    return [
        _call(packer, slot, positions[start : start + chunk], keys, costs, now_us)
        for slot, positions in groups.items()
        for start in range(0, len(positions), chunk)
    ]


def plan_deferred(
    packer: Packer,
    subjects: Sequence[Subject],
    keys_of: Callable[[Sequence[Subject]], list[bytes]],
    costs: list[int],
    now_us: int | None,
    chunk: int,
) -> list[Call]:
    """`plan_deferred` is `plan_calls` for a single node, with each call's
    keys computed when it is sent (see `Call`); ``subjects`` must already
    be valid for ``keys_of``."""
    return [
        Call(
            packer,
            -1,
            list(range(start, min(start + chunk, len(subjects)))),
            None,
            costs[start : start + chunk],
            now_us,
            subjects[start : start + chunk],
            keys_of,
        )
        for start in range(0, len(subjects), chunk)
    ]


Plan = list[tuple[Address | None, list[Call]]]
# What an exchange makes of one call's replies (see Exchange).
Convert = Callable[[list[RawReply]], Sequence[object]]
# How a transport hands a call its reply (Exchange.receive).
Receive = Callable[[Call, object], None]


# Exceptions (besides error replies) that mean a call timed out.
TIMEOUT_ERRORS = (RedisTimeoutError, TimeoutError, asyncio.TimeoutError)


def is_transport_error(reply: object) -> bool:
    """`is_transport_error` is true for what the I/O layer returns when a
    call got no reply (whether the server acted on it is unknown)."""
    return isinstance(reply, BaseException) and not isinstance(reply, ResponseError)


def redirect_of(error: ResponseError) -> tuple[str, int, Address] | None:
    # (kind, slot, address) of a MOVED or ASK reply, parsed from the
    # exception redis-py raised (its class, or its text on older parsers).
    if isinstance(error, AskError):
        kind = "moved" if isinstance(error, MovedError) else "ask"
        return kind, error.slot_id, (error.host, error.port)
    words = str(error).split()
    if len(words) == 3 and words[0] in ("MOVED", "ASK"):
        host, _, port = words[2].rpartition(":")
        return words[0].lower(), int(words[1]), (host, int(port))
    return None


def _is(error: ResponseError, kind: type[ResponseError], code: str) -> bool:
    return isinstance(error, kind) or str(error).startswith(code)


class Exchange:
    """`Exchange` runs ``calls`` (answering ``size`` decisions) to the end.

    Round by round: `next_round` is what to send, (address or None for the
    single node, calls) per node, or None when every decision has its
    outcome; the transport then hands each call of that plan to `receive`
    with the call's reply (or the exception that ended it) as soon as the
    reply is read, so that decoding overlaps the server's work on the next
    call. ``convert`` (None: keep them) turns a call's decoded replies
    into what `outcomes` holds, e.g. Decisions.

    `outcomes` then holds each decision's outcome (a reply, or
    BackendError with the cause chained, or the CircuitOpenError of a node
    whose breaker was open) and `failures` the first failure seen on each
    node (for that node's breaker). Not shared between threads.
    """

    __slots__ = (
        "_convert",
        "_counters",
        "_packer",
        "_pending",
        "_rounds",
        "_slots",
        "failures",
        "outcomes",
    )

    def __init__(
        self,
        packer: Packer,
        calls: list[Call],
        size: int,
        slots: SlotMap | None,
        counters: Counters,
        convert: Convert | None = None,
    ) -> None:
        self._packer = packer
        self._pending = calls
        self._slots = slots
        self._counters = counters
        self._convert = convert
        self._rounds = 0
        self.outcomes: list[Any] = [None] * size
        self.failures: dict[Address | None, BaseException] = {}

    def next_round(self) -> Plan | None:
        """`next_round` is the plan of the next round, or None when done
        (calls still unanswered after MAX_ROUNDS then fail)."""
        pending = self._pending
        if self._rounds == MAX_ROUNDS:
            for call in pending:
                _fail(
                    call,
                    self.outcomes,
                    BackendError("too many redirections or reloads"),
                )
            self._pending = []
            return None
        plan = _route(pending, self._slots, self.outcomes, self._counters)
        self._pending = []
        if not plan:
            return None
        self._rounds += 1
        return plan

    def count_round(self, plan: Plan) -> None:
        """`count_round` counts a round trip of ``plan`` (what the breakers
        and the first contacts let through) as sent."""
        calls = 0
        for _, sent in plan:
            calls += len(sent)
        self._counters.add_round(calls)

    def receive(self, call: Call, reply: object) -> None:
        """`receive` settles ``call`` (of the current plan) with ``reply``:
        records its outcomes, or keeps what to resend next round."""
        retry = _settle(
            self._packer,
            call,
            reply,
            self._slots,
            self.outcomes,
            self._counters,
            self._convert,
        )
        if retry is not None:
            self._pending.extend(retry)
        elif (
            isinstance(reply, BaseException)
            and call.node not in self.failures
            and counts_against_node(reply)
        ):
            # A timeout, or an error reply that is about the server (OOM,
            # BUSY, LOADING, ...): the node's breaker counts it.
            self.failures[call.node] = reply

    def reject(self, call: Call, error: BaseException) -> None:
        """`reject` fails ``call`` (of the current plan) with ``error``
        without sending it: its node's breaker is open."""
        _fail(call, self.outcomes, error)


def _route(
    calls: list[Call],
    slots: SlotMap | None,
    outcomes: list[Any],
    counters: Counters,
) -> Plan:
    if (
        len(calls) == 1
        and slots is None
        and not calls[0].load
        and not calls[0].load_function
    ):
        return [(None, calls)]  # the common case: one call, one node
    groups: dict[Address | None, list[Call]] = {}
    for call in calls:
        address = call.ask
        if address is None and slots is not None:
            address = slots.node(call.slot)
            if address is None:
                _fail(call, outcomes, BackendError(f"no node serves slot {call.slot}"))
                continue
        call.node = address
        groups.setdefault(address, []).append(call)
    for group in groups.values():
        # One SCRIPT LOAD per script (FUNCTION LOAD) ahead of the node's
        # pipeline serves all its calls.
        if any(call.load for call in group):
            counters.add("noscript_reloads")
            loading: set[bytes] = set()
            for call in group:
                call.load = call.script.sha not in loading
                loading.add(call.script.sha)
        if any(call.load_function for call in group):
            counters.add("function_loads")
            for index, call in enumerate(group):
                call.load_function = index == 0
    return list(groups.items())


def _fail(call: Call, outcomes: list[Any], error: BaseException) -> None:
    for position in call.positions:
        outcomes[position] = error


def _settle(
    packer: Packer,
    call: Call,
    reply: object,
    slots: SlotMap | None,
    outcomes: list[Any],
    counters: Counters,
    convert: Convert | None,
) -> list[Call] | None:
    # Records the call's replies, or fails them, or returns what to resend.
    # A call resent after ASK keeps going to the importing node (behind
    # ASKING) until that node answers it, for NOSCRIPT and TRYAGAIN too.
    call.load = call.load_function = False
    call.repair = False
    if isinstance(call, RepairCall):
        return None  # its reply (keys deleted, or an error) decides nothing
    if isinstance(reply, ResponseError):
        redirect = redirect_of(reply)
        if redirect is not None and slots is not None:
            kind, slot, address = redirect
            counters.add(kind)
            if kind == "moved":
                slots.moved(slot, address)
                call.ask = None
            else:
                call.ask = address
            return [call]
        if call.fcall:
            retry = _function_failed(call, reply)
            if retry is not None:
                return retry
        if _is(reply, NoScriptError, "NOSCRIPT"):
            call.load = True
            # A flushed script cache (a restart, a failover): the node may
            # now run Functions, tried from the next request on; this call
            # stays on EVALSHA, so that it ends on a server without them.
            call.evalsha_only = True
            if call.paths is not None:
                call.paths.retry_functions(call.node)
            return [call]
        if _is(reply, TryAgainError, "TRYAGAIN"):
            counters.add("tryagain")
            return [call] if call.single else _split(packer, call)
        counters.add("error_replies")
        _fail(call, outcomes, BackendError(f"Redis replied with an error: {reply}"))
        if is_wrongtype(reply) and call.ask is None:
            # Someone overwrote a limiter key with another type. A single
            # call failed at its first read, so it is repaired and resent;
            # a batch may have decided keys before the bad one, so its
            # decisions stay failed and only the repair is sent.
            if not call.single:
                counters.add("wrongtype_repairs")
                return [RepairCall(call)]
            if not call.repaired:
                counters.add("wrongtype_repairs")
                call.repair = call.repaired = True
                return [call]
        return None
    if isinstance(reply, BaseException):
        counters.add("transport_errors")
        if isinstance(reply, TIMEOUT_ERRORS):
            counters.add("timeouts")
        if slots is not None:
            slots.mark_stale()
        error = BackendError(f"Redis did not answer: {reply}")
        error.__cause__ = reply
        _fail(call, outcomes, error)
        return None
    try:
        replies = (
            [packer.decode(reply, call.costs[0])]
            if call.single
            else decode_batch(reply, len(call.positions))
        )
        converted = replies if convert is None else convert(replies)
    except (ValueError, TypeError, IndexError) as exc:
        # A reply the client cannot read (a foreign script, a corrupted
        # reply) fails this call's decisions only: they get the fallback
        # policy, and the breaker sees an answering server.
        _fail(call, outcomes, BackendError(f"unreadable script reply: {exc}"))
        return None
    positions = call.positions
    first = positions[0]
    if positions[-1] - first == len(positions) - 1 == len(converted) - 1:
        # A run of positions (they increase within a call): one copy.
        outcomes[first : first + len(converted)] = converted
        return None
    for position, outcome in zip(positions, converted, strict=True):
        outcomes[position] = outcome
    return None


def _function_failed(call: Call, reply: ResponseError) -> list[Call] | None:
    # What to resend after an FCALL's error reply that says it did not run:
    # the library loaded ahead of it once, then EVALSHA (the node cannot
    # load it, or cannot run FCALL at all). None for any other error.
    not_found = function_not_found(reply)
    if not_found and not call.function_loaded:
        call.load_function = call.function_loaded = True
        return [call]
    if not_found or fcall_refused(reply):
        assert call.paths is not None
        call.paths.use_evalsha(call.node, reply)
        call.evalsha_only = True
        return [call]
    return None


def redirected(
    key: bytes, slots: SlotMap | None
) -> Generator[tuple[Address | None, bool], object, object]:
    """`redirected` runs one plain command on ``key`` to the end: yields
    (address, asking) to send it to, receives the reply (an error reply as
    a ResponseError), follows MOVED and ASK, and returns the reply; raises
    BackendError for any other error reply."""
    asking: Address | None = None
    for _ in range(MAX_ROUNDS):
        address = asking
        if address is None and slots is not None:
            address = slots.node(key_slot(key))
        reply = yield address, asking is not None
        if not isinstance(reply, ResponseError):
            return reply
        redirect = redirect_of(reply)
        if redirect is None or slots is None:
            raise BackendError(f"Redis replied with an error: {reply}")
        kind, slot, target = redirect
        if kind == "moved":
            slots.moved(slot, target)
            asking = None
        else:
            asking = target
    raise BackendError("too many redirections")
