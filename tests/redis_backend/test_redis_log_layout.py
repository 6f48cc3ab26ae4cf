"""The sliding log's layout and lean decider (lua/log_header.lua,
lua/lean_sliding_log.lua): a decision costs Redis O(1) commands and bytes (one
HGET and one HSET, an entry read once when it expires, the expiry
written once per eighth of the period), on FCALL and on the lean EVALSHA script;
the lean decider, the batch path and the general script decide one key
alike, as the reference core, in both reply forms (an integer, 24
bytes)."""

from __future__ import annotations

import struct

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from test_redis_differential import (
    BASE_US,
    EXAMPLES,
    Reference,
    bind,
    limit_specs,
    traces,
)
from test_redis_lean import _general

from ratefuse.core.spec import NEVER, LimitSpec
from ratefuse.rates import SLIDING_LOG_MAX_LIMIT
from ratefuse.redis import RedisBackend
from ratefuse.redis._lean import LeanLimit

PATHS = ("lean", "batch", "general")


def _calls(client: redis.Redis) -> dict[str, int]:
    # Calls per command since the last CONFIG RESETSTAT.
    stats = client.info("commandstats")
    return {name[len("cmdstat_") :]: value["calls"] for name, value in stats.items()}


def _commands(client: redis.Redis, decide: object, count: int) -> dict[str, int]:
    # Calls per command of ``count`` decisions (the library or script
    # loaded ahead: see _warm).
    client.config_resetstat()
    for index in range(count):
        decide(index)  # type: ignore[operator]
    calls = _calls(client)
    calls.pop("config|resetstat", None)
    return calls


def _warm(store: object) -> None:
    # A query of another subject: loads the library or script, writes
    # nothing.
    assert store.decide_us("warm", 0, now_us=BASE_US).allowed  # type: ignore[attr-defined]


def test_an_admission_reads_one_field_and_writes_two(
    node_backend: RedisBackend, client: redis.Redis, fresh_name
) -> None:
    # 100,000 a second, decisions 10 us apart: no entry expires, the log
    # grows to 300 entries, and each decision is one HGET and one HSET
    # (header and entry), whatever the log holds.
    spec = LimitSpec("sliding_log", SLIDING_LOG_MAX_LIMIT, 1_000_000, 0)
    store = bind(node_backend, [spec], fresh_name)
    start = BASE_US
    _warm(store)

    def decide(index: int) -> None:
        assert store.decide_us("s", 1, now_us=start + 10 * index).allowed

    calls = _commands(client, decide, 300)
    script = calls.pop("fcall", 0) + calls.pop("evalsha", 0)
    assert script == 300
    assert calls.pop("hget") == 300
    assert calls.pop("hset") == 300
    # The key's expiry, set once: an eighth of a second covers the 3 ms.
    assert calls.pop("pexpireat") == 1
    calls.pop("pexpiretime", None)
    calls.pop("pttl", None)
    calls.pop("time", None)
    assert calls == {}
    assert client.object("encoding", store.binding.schema.key("s")) == b"hashtable"


def test_a_log_of_at_most_64_stays_a_listpack(
    node_backend: RedisBackend, client: redis.Redis, fresh_name
) -> None:
    # The header is 34 bytes up to a limit of 64 (a listpack, about half
    # the memory), 65 above (a hash table from the first write).
    for capacity, encoding in ((64, b"listpack"), (65, b"hashtable")):
        spec = LimitSpec("sliding_log", capacity, 1_000_000, 0)
        store = bind(node_backend, [spec], fresh_name)
        for index in range(capacity):
            assert store.decide_us("s", 1, now_us=BASE_US + index).allowed
        key = store.binding.schema.key("s")
        assert client.object("encoding", key) == encoding
        assert len(client.hget(key, store.binding.wire_limits[0].field)) == (
            34 if capacity == 64 else 65
        )


def test_an_entry_is_read_once_when_it_expires(
    node_backend: RedisBackend, client: redis.Redis, fresh_name
) -> None:
    # 100 a millisecond, decisions 10 us apart: past the first period
    # every decision expires one entry, read once, then the header holds
    # the oldest live entry again.
    spec = LimitSpec("sliding_log", 100, 1_000, 0)
    store = bind(node_backend, [spec], fresh_name)
    start = BASE_US
    _warm(store)

    def decide(index: int) -> None:
        assert store.decide_us("s", 1, now_us=start + 10 * index).allowed

    calls = _commands(client, decide, 400)
    assert calls["hget"] <= 400 + 300  # the header's, and one per expired
    assert calls["hset"] == 400
    assert "hmget" not in calls  # never the general path
    # An eighth of this period rounds down to no slack: the expiry is set
    # again once per millisecond (100 decisions).
    assert calls["pexpireat"] <= 400 // 100 + 1


def test_an_idle_full_log_reads_no_entry(
    node_backend: RedisBackend, client: redis.Redis, fresh_name
) -> None:
    # A full ring of 1,000 entries, then a period of silence: the next
    # decision finds the newest entry over and reads no entry at all.
    spec = LimitSpec("sliding_log", 1000, 1_000_000, 0)
    store = bind(node_backend, [spec], fresh_name)
    for index in range(1000):
        assert store.decide_us("s", 1, now_us=BASE_US + index).allowed
    assert not store.decide_us("s", 1, now_us=BASE_US + 1000).allowed
    _warm(store)
    later = BASE_US + 2_000_000

    def decide(index: int) -> None:
        verdict = store.decide_us("s", 1, now_us=later + index)
        assert (verdict.allowed, verdict.remaining) == (True, 999 - index)

    calls = _commands(client, decide, 3)
    assert calls["hget"] == 3
    assert calls["hset"] == 3


def test_a_denial_of_one_unit_reads_no_entry(
    node_backend: RedisBackend, client: redis.Redis, fresh_name
) -> None:
    # A full log of unit costs: a denial of one unit frees with the oldest
    # entry, whose stamp the header holds.
    spec = LimitSpec("sliding_log", 50, 1_000_000, 0)
    store = bind(node_backend, [spec], fresh_name)
    for index in range(50):
        assert store.decide_us("s", 1, now_us=BASE_US + index).allowed
    _warm(store)

    def decide(index: int) -> None:
        verdict = store.decide_us("s", 1, now_us=BASE_US + 100 + index)
        assert not verdict.allowed
        assert verdict.retry_after_us == 1_000_000 - 100 - index

    calls = _commands(client, decide, 5)
    assert calls["hget"] == 5
    assert "hset" not in calls


@pytest.mark.parametrize("algorithm", ["sliding_log"])
@EXAMPLES
@given(data=st.data())
def test_lean_batch_and_general_paths_decide_one_key_alike(
    node_backend: RedisBackend,
    client: redis.Redis,
    fresh_name,
    algorithm: str,
    data: st.DataObject,
) -> None:
    # Each step through one of the three paths, on one key: the lean
    # decider (a single decision), a batch (the general step, per key of
    # the batch script), the general script as an older client sends it.
    spec = data.draw(
        st.one_of(
            limit_specs(algorithm),
            # Periods whose reset does not fit the admitted reply's one
            # integer with the limit: the 24-byte form.
            st.builds(
                LimitSpec,
                st.just(algorithm),
                st.integers(10_000, SLIDING_LOG_MAX_LIMIT),
                st.integers(2**40, 2**42),
                st.just(0),
            ),
        )
    )
    trace = data.draw(traces(spec.period_ns, spec.capacity))
    paths = data.draw(
        st.lists(st.sampled_from(PATHS), min_size=len(trace), max_size=len(trace))
    )
    store = bind(node_backend, [spec], fresh_name)
    key = store.binding.schema.key("subject")
    reference = Reference([spec])
    now = latest = BASE_US
    for index, ((step, cost), path) in enumerate(zip(trace, paths, strict=True)):
        now = max(BASE_US, now + step, latest - spec.period_ns)
        latest = max(latest, now)
        cost = store.binding.cost(cost)
        if path == "general":
            got = _general(client, spec, key.decode(), cost, now)
            actual = (got[0] == 1, *got[1:4], spec.capacity)
        elif path == "batch":
            # Two keys: a batch of one goes out as a single decision.
            verdict, _ = store.decide_many_us(
                ["subject", "spare"], [cost, 0], now_us=now
            )
            actual = (*verdict[:4], spec.capacity)
        else:
            verdict = store.decide_us("subject", cost, now_us=now)
            actual = (*verdict[:4], spec.capacity)
        assert actual == reference.decide(cost, now), f"step {index}: {path=}"


@EXAMPLES
@given(data=st.data())
def test_the_lean_and_general_paths_leave_the_same_log(
    node_backend: RedisBackend, client: redis.Redis, fresh_name, data: st.DataObject
) -> None:
    # One trace through the lean decider and, on a second key, through
    # batches (the general step): the same verdicts, and the same hash
    # (header and entries) and expiry after each.
    spec = data.draw(
        st.builds(
            LimitSpec,
            st.just("sliding_log"),
            st.sampled_from([1, 2, 3, 5, 64, 65, 200]),
            st.integers(1, 5_000),
            st.just(0),
        )
    )
    # Steady traffic (steps of at most a quarter period: entries expire a
    # few at a time) or any trace.
    steady = st.lists(
        st.tuples(
            st.integers(max(1, spec.period_ns // 16), max(1, spec.period_ns // 4)),
            st.sampled_from([1, 1, 1, 0, 2, 3]),
        ),
        min_size=10,
        max_size=60,
    )
    trace = data.draw(st.one_of(steady, traces(spec.period_ns, spec.capacity)))
    store = bind(node_backend, [spec], fresh_name)
    lean, general = (store.binding.schema.key(s) for s in ("lean", "general"))
    now = BASE_US
    for index, (step, cost) in enumerate(trace):
        now = max(BASE_US, now + step)
        cost = store.binding.cost(cost)
        one = store.decide_us("lean", cost, now_us=now)
        # Two keys: a batch of one goes out as a single decision.
        other, _ = store.decide_many_us(["general", "spare"], [cost, 0], now_us=now)
        assert one == other, f"step {index}"
        assert client.hgetall(lean) == client.hgetall(general), f"step {index}"
        assert client.pexpiretime(lean) == client.pexpiretime(general)


def test_the_key_lives_past_its_newest_entry_by_at_most_an_eighth(
    node_backend: RedisBackend, client: redis.Redis, fresh_name
) -> None:
    spec = LimitSpec("sliding_log", 10, 8_000_000, 0)
    store = bind(node_backend, [spec], fresh_name)
    key = store.binding.schema.key("s")
    start = BASE_US - BASE_US % 1000
    assert store.decide_us("s", 1, now_us=start).allowed
    end = (start + 8_000_000) // 1000 + 1
    assert client.pexpiretime(key) == end + 1000
    # While the newest entry ends within that second the expiry stands;
    # past it, it is set again, a second past the newest entry's end.
    assert store.decide_us("s", 1, now_us=start + 999_000).allowed
    assert client.pexpiretime(key) == end + 1000
    assert store.decide_us("s", 1, now_us=start + 1_001_000).allowed
    assert client.pexpiretime(key) == end + 1001 + 1000
    # Another limit's later expiry on the shared key is never cut.
    client.pexpireat(key, end + 60_000)
    assert store.decide_us("s", 1, now_us=start + 3_000_000).allowed
    assert client.pexpiretime(key) == end + 60_000


def _doubles(*words: int) -> bytes:
    return struct.pack("<3d", *words)


def test_lean_replies_rebuild_the_verdict() -> None:
    lean = LeanLimit("sliding_log", 5, 1_000)
    # Admitted: reset * (limit + 1) + total.
    assert lean.verdict(1_000 * 6 + 2, 1) == (1, 3, 0, 1_000, 0)
    # Else retry, total and reset as 24 bytes of doubles, retry 0 admitted.
    assert lean.verdict(_doubles(0, 5, 2**50), 1) == (1, 0, 0, 2**50, 0)
    assert lean.verdict(_doubles(700, 5, 900), 1) == (0, 0, 700, 900, 0)
    assert lean.verdict(_doubles(NEVER, 2, 900), 9) == (0, 3, NEVER, 900, 0)
    for reply in (-1, [0, 5, 900], _doubles(1, 2, 3)[:16], "x", None):
        with pytest.raises(ValueError, match="unexpected script reply"):
            lean.verdict(reply, 1)
