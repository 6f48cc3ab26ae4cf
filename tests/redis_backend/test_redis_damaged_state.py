"""What a script reads from a key is validated: a value no decision writes
(garbage, a value of the wrong size or id, a word past 2**53 that doubles
cannot hold exactly, a negative, a fraction, NaN or an infinity, a state
further ahead than the limit allows) is repaired to the
limit's drained state, never taken as a new subject, and never yields a
negative or endless wait. The client refuses a reply no script gives.

Each damaged value goes through the three paths that read a key: a single
decision, a batch's inline path, and the general path (a compound limit)."""

from __future__ import annotations

import struct

import msgpack
import pytest
from string_values import entry

from ratefuse import RateLimitExceeded
from ratefuse.core.errors import BackendError
from ratefuse.rates import build_specs, to_rates
from ratefuse.redis import RedisLimiter
from ratefuse.redis._backed import RedisKeyedLimiter
from ratefuse.redis._codec import decode_batch, decode_single

NOW_US = 4_000_000_000_000_000  # keys expire by the injected clock: 2096
HUGE = "99999999999999999999999"  # past 2**63: an overflow once negated
WIDTH = {"gcra": 1, "fixed_window": 2, "sliding_window": 3}
# The sliding log's header (lua/log_header.lua), little-endian: head,
# count, total, the oldest entry's stamp and units, the newest stamp, the
# expiry last set. Entries are 10 bytes, stamp and units, in fields named
# by the id and the slot (4 bytes).
LOG_WORDS = (3, 3, 3, 7, 3, 7, 8)


def _log_header(*words: int) -> bytes:
    return b"".join(
        word.to_bytes(size, "little")
        for word, size in zip(words, LOG_WORDS, strict=True)
    )


def _log_entry(stamp: int, units: int) -> bytes:
    return stamp.to_bytes(7, "little") + units.to_bytes(3, "little")


def _entry_field(field: str, slot: int) -> bytes:
    return field.encode() + struct.pack("<I", slot)


def _damaged_headers(capacity: int, period_us: int) -> list[bytes]:
    # Headers a script never writes, for one sliding log limit.
    live = NOW_US - period_us // 2
    return [
        b"garbage",
        b"",
        _log_header(0, 0, 0, 0, 0, 0, 0) + b"x",
        _log_header(0, 0, 0, 0, 0, 0, 0) + b"x" * 31,  # a wide one (limits > 64)
        _log_header(capacity, 1, 1, live, 1, live, 0),  # head off the ring
        _log_header(0, capacity + 1, capacity, live, 1, live, 0),
        _log_header(0, 0, capacity + 1, 0, 0, 0, 0),
        _log_header(0, 0, 3, 0, 0, 0, 0),  # a total without entries
        _log_header(0, 2, 1, live, 1, live, 0),  # entries of no units
        _log_header(0, 1, 2, live, 1, live, 0),  # one entry, two totals
        _log_header(0, 1, 1, live, 0, live, 0),
        _log_header(0, 2, 2, live + 5, 1, live, 0),  # oldest after newest
        _log_header(0, 1, 1, 2**53, 1, 2**53, 0),
        _log_header(0, 1, 1, 2**56 - 1, 1, 2**56 - 1, 0),
        _log_header(0, 0, 0, 0, 0, 0, 2**63),
        _log_header(0, 0, 0, 0, 0, 0, 2**64 - 1),
    ]


def _damaged_words(algorithm: str, capacity: int, period_us: int) -> list[list[str]]:
    # Word lists a script never writes, for one limit of ``algorithm``, as
    # doubles (the "string" layout; the sliding log's: _damaged_headers).
    width = WIDTH[algorithm]
    window = NOW_US // period_us
    cases = [
        [word] * width
        for word in ("1e23", "-5", "1.5", str(2**53), "nan", "inf", "-inf")
    ]
    if algorithm == "gcra":
        cases.append([str(NOW_US + 10 * period_us)])  # far ahead of now
    else:
        cases.append([str(window + 5)] + ["0"] * (width - 1))
        cases.append([str(window), str(capacity + 1)] + ["0"] * (width - 2))
    return cases


def _damaged_values(field: str, width: int) -> list[bytes]:
    # "string" layout values of no shape a script writes: text garbage,
    # the entry cut short or run on, this limit's entry in the decimal text
    # of key version 2.
    whole = entry(field, [1.0] * width)
    return [
        b"garbage",
        field.encode() + b" garbage",
        whole[:-1],
        whole + b"x",
        f"{field} {' '.join(['1'] * width)}".encode(),
    ]


def _write(client, key: bytes, field: str, words: list[str]) -> None:
    client.delete(key)
    client.set(key, entry(field, [float(word) for word in words]))


@pytest.mark.parametrize(
    "algorithm", ["gcra", "fixed_window", "sliding_window", "sliding_log"]
)
@pytest.mark.parametrize("path", ["single", "batch", "compound"])
def test_damaged_state_is_drained_never_new(
    node_backend, client, fresh_name, algorithm, path
) -> None:
    limits = "5/s; 1000/h" if path == "compound" else "5/s"
    store = node_backend.bind(build_specs(to_rates(limits), algorithm), fresh_name())
    wire = store.binding.wire_limits[0]
    period_us = wire.period_us
    damages: list[list[str] | bytes] = []
    if algorithm == "sliding_log":
        headers = _damaged_headers(wire.capacity, period_us)
    else:
        headers = []
        damages += _damaged_words(algorithm, wire.capacity, period_us)
        damages += _damaged_values(wire.field, WIDTH[algorithm])
    for index, words in enumerate([*damages, *headers]):
        subject = f"k{index}"
        key = store.binding.schema.key(subject)
        # The longest a drained limit makes one wait: the first limit's
        # when its words are damaged (the others' entries are absent: new),
        # every limit's when the whole value is garbage.
        span_us = 2 * period_us
        if index >= len(damages):  # a sliding log's header
            client.delete(key)
            client.hset(key, wire.field, words)
        elif isinstance(words, bytes):
            client.set(key, words)
            span_us = 2 * max(limit.period_us for limit in store.binding.wire_limits)
        else:
            _write(client, key, wire.field, words)
        if path == "batch":
            (decision,) = store.decide_many([subject], now_us=NOW_US)
            decision, second = store.decide_many([subject, subject], now_us=NOW_US)
        else:
            decision = store.decide(subject, 1, NOW_US)
            second = store.decide(subject, 1, NOW_US)
        for got in (decision, second):
            assert not got.allowed, (words, got)
            assert 0 < got.retry_after <= span_us / 1e6, (words, got)
            assert got.remaining == 0, (words, got)
        # The repair was written: the key reads as a state the script wrote,
        # and the limit admits again once its span is over.
        assert store.decide(subject, 1, NOW_US + span_us).allowed, words
        assert client.pttl(key) > 0, words


@pytest.mark.parametrize(
    ("entry", "total", "error"),
    [
        (b"garbage", 2, r"entry .*:1 is .*garbage.*, not <stamp><units>"),
        (_log_entry(NOW_US, 0), 2, r"entry .*:1 is .*, not <stamp><units>"),
        (_log_entry(NOW_US, 6), 2, r"entry .*:1 is .*, not <stamp><units>"),
        (_log_entry(2**53, 1), 2, r"entry .*:1 is .*, not <stamp><units>"),
        (None, 2, r"live entry .*:1 is missing"),
        # The newest stamp is live but no entry is.
        (
            _log_entry(NOW_US - 1_000_000, 1),
            2,
            r"its total does not match its live entries",
        ),
        # A total its entries never free: a scan for the retry once looped
        # forever.
        (_log_entry(NOW_US, 1), 5, r"its total exceeds its live entries"),
    ],
)
def test_a_log_whose_entries_disagree_is_refused_by_name(
    node_backend, client, fresh_name, entry, total, error
) -> None:
    # Two entries, the oldest expired at NOW_US: the decision reads the
    # second, and a denial scans it for its retry.
    store = node_backend.bind(build_specs(to_rates("5/s"), "sliding_log"), fresh_name())
    wire = store.binding.wire_limits[0]
    key = store.binding.schema.key("k")
    assert store.decide("k", 1, NOW_US).allowed
    header = _log_header(0, 2, total, NOW_US - 1_000_000, 1, NOW_US, 0)
    client.hset(key, wire.field, header)
    client.hset(key, _entry_field(wire.field, 0), _log_entry(NOW_US - 1_000_000, 1))
    if entry is None:
        client.hdel(key, _entry_field(wire.field, 1))
    else:
        client.hset(key, _entry_field(wire.field, 1), entry)
    with pytest.raises(BackendError, match="sliding_log key .*: " + error):
        store.decide("k", 5, NOW_US)
    store.reset("k")
    assert store.decide("k", 1, NOW_US).allowed


def test_a_lease_reply_never_grants_more_than_was_asked(client, fresh_name) -> None:
    # The table takes what the fleet granted: a reply granting more than
    # the lease asked (a foreign script) is cut to the ask.
    limiter = RedisLimiter("100/s", backend=client, name=fresh_name(), lease=True)
    answers = limiter._answers
    answers.absorb("k", 4, (9, 0, 0, 0, 0), answers.clock())
    assert answers.table.balance("k", answers.clock()) == 4
    limiter.close()


def test_acquire_on_a_damaged_key_waits_a_bounded_time(client, fresh_name) -> None:
    # A tat past 2**63 once came back as a negative retry_after, and
    # acquire(timeout=2.0) asked Redis thousands of times a second.
    clock = [0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock[0] += round(seconds * 1e9)

    limiter = RedisKeyedLimiter(
        "1/h",
        "gcra",
        backend=client,
        name=fresh_name(),
        deny_cache=False,
        clock=lambda: clock[0],
        sleep=sleep,
    )
    wire = limiter._binding.wire_limits[0]
    client.set(limiter._schema.key("k"), entry(wire.field, [float(HUGE)]))
    with pytest.raises(RateLimitExceeded):
        limiter.acquire("k", timeout=2.0)
    assert sleeps == []  # the wait (an hour at most) cannot fit: at once
    decision = limiter.decide("k")
    assert 0 < decision.retry_after <= 3600
    limiter.close()


@pytest.mark.parametrize(
    "reply",
    [
        [0, 0, -2, 0, 0],
        [0, 0, -(2**63), 0, 0],
        [0, -1, 5, 0, 0],
        [0, 0, 5, -1, 0],
        [0, 0, 5, 0, -1],
        [-1, 0, 5, 0, 0],
    ],
)
def test_the_client_refuses_a_reply_no_script_gives(reply) -> None:
    with pytest.raises(ValueError, match="script replied"):
        decode_single(reply)
    with pytest.raises(ValueError, match="script replied"):
        decode_batch(msgpack.packb([1, 2, 0, 0, 0, *reply]), 2)
    # NEVER (-1) is the one negative a retry_after may be.
    assert decode_single([0, 0, -1, 0, 0]) == (0, 0, -1, 0, 0)
