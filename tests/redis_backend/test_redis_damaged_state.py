"""What a script reads from a key is validated: a value no decision writes
(garbage, a value of the wrong size or id, a word past 2**53 that doubles
cannot hold exactly, a negative, a fraction, NaN or an infinity, a state
further ahead than the limit allows) is repaired to the
limit's drained state, never taken as a new subject, and never yields a
negative or endless wait. The client refuses a reply no script gives.

Each damaged value goes through the three paths that read a key: a single
decision, a batch's inline path, and the general path (a compound limit)."""

from __future__ import annotations

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
WIDTH = {"gcra": 1, "fixed_window": 2, "sliding_window": 3, "sliding_log": 3}
SUFFIXES = {"sliding_log": (":h", ":n", ":t")}


def _damaged_words(algorithm: str, capacity: int, period_us: int) -> list[list[str]]:
    # Word lists a script never writes, for one limit of ``algorithm``:
    # decimal text (the "hash" layout), or doubles (the "string" layout).
    width = WIDTH[algorithm]
    window = NOW_US // period_us
    if algorithm in SUFFIXES:
        cases = [
            [HUGE] * width,
            ["-5"] * width,
            ["1.5"] * width,
            [str(2**53)] * width,
            ["nan"] * width,
            ["0x10"] * width,
            ["garbage"] * width,
        ]
    else:
        cases = [
            [word] * width
            for word in ("1e23", "-5", "1.5", str(2**53), "nan", "inf", "-inf")
        ]
    if algorithm == "gcra":
        cases.append([str(NOW_US + 10 * period_us)])  # far ahead of now
    elif algorithm == "sliding_log":
        cases.append(["0", "0", str(capacity + 1)])
        cases.append([str(capacity), "0", "0"])
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


def _write(client, key: bytes, algorithm: str, field: str, words: list[str]) -> None:
    client.delete(key)
    if algorithm in SUFFIXES:
        mapping = {
            field + suffix: word
            for suffix, word in zip(SUFFIXES[algorithm], words, strict=True)
        }
        client.hset(key, mapping=mapping)
    else:
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
    damages: list[list[str] | bytes] = [
        *_damaged_words(algorithm, wire.capacity, period_us)
    ]
    if algorithm not in SUFFIXES:
        damages += _damaged_values(wire.field, WIDTH[algorithm])
    for index, words in enumerate(damages):
        subject = f"k{index}"
        key = store.binding.schema.key(subject)
        # The longest a drained limit makes one wait: the first limit's
        # when its words are damaged (the others' entries are absent: new),
        # every limit's when the whole value is garbage.
        span_us = 2 * period_us
        if isinstance(words, bytes):
            client.set(key, words)
            span_us = 2 * max(limit.period_us for limit in store.binding.wire_limits)
        else:
            _write(client, key, algorithm, wire.field, words)
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
    ("damage", "error"),
    [
        ({":0": "garbage"}, r"entry .*:0 is .*garbage.*, not <stamp>:<units>"),
        ({":0": f"{NOW_US}:0"}, r"entry .*:0 is .*, not <stamp>:<units>"),
        ({":0": f"{NOW_US}:6"}, r"entry .*:0 is .*, not <stamp>:<units>"),
        ({":n": "2"}, r"live entry .*:1 is missing"),
        # A total its entries never free: retry_stamp once looped forever.
        ({":0": "1:1", ":t": "5"}, r"its total does not match its live entries"),
        ({":t": "5"}, r"its total exceeds its live entries"),
    ],
)
def test_a_log_whose_entries_disagree_is_refused_by_name(
    node_backend, client, fresh_name, damage, error
) -> None:
    store = node_backend.bind(build_specs(to_rates("5/s"), "sliding_log"), fresh_name())
    wire = store.binding.wire_limits[0]
    key = store.binding.schema.key("k")
    assert store.decide("k", 1, NOW_US).allowed
    client.hset(key, mapping={wire.field + at: value for at, value in damage.items()})
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
