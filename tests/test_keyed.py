"""The keyed engine on a fixed time grid, both implementations: keys, the
bounded table (stats, idle states, eviction, memory) and batch decisions."""

from __future__ import annotations

import pytest

from ratefuse import KeyedLimiter, Rate
from ratefuse.rates import build_specs

numpy = pytest.importorskip("numpy")

MS = 1_000_000
SECOND = 1_000 * MS
SECRET = bytes(range(16))
HOUR = Rate(1, 3600.0)
STATS_FIELDS = {
    "live_keys",
    "max_keys",
    "capacity",
    "evictions",
    "expired",
    "memory_bytes",
}


def keyed(impl, rate: Rate = HOUR, algorithm: str = "gcra", max_keys: int = 1000):
    """`keyed` is a KeyedLimiterCore of ``impl`` with a fixed secret."""
    specs = build_specs([rate], algorithm)
    return impl.module("engine._keyed").KeyedLimiterCore(specs, max_keys, None, SECRET)


def fresh(impl, rate: Rate, algorithm: str, cost: int, now: int):
    """`fresh` is the decision a subject never seen before gets."""
    return (
        impl.module("engine._subject")
        .LimiterCore(build_specs([rate], algorithm))
        .decide(cost, now=now)
    )


# ---- keys ----


def test_key_spellings_are_separate_keys(impl) -> None:
    core = keyed(impl)
    distinct = ["1", b"1", 1, 2**64, str(2**64), -1, 2**64 - 1, "", b"", 0, -(2**80)]
    assert [core.try_acquire(key, 1, 0) for key in distinct] == [True] * len(distinct)
    assert [core.try_acquire(key, 1, 0) for key in distinct] == [False] * len(distinct)
    assert not core.try_acquire(True, 1, 0)  # True is the key 1
    assert not core.try_acquire(False, 1, 0)  # and False is 0
    assert core.stats()["live_keys"] == len(distinct)


@pytest.mark.parametrize(
    "key", [1.0, None, bytearray(b"1"), (1,), memoryview(b"1"), numpy.int64(1)]
)
def test_bad_key_types_raise_type_error(impl, key) -> None:
    core = keyed(impl)
    match = f"key must be str, bytes or int, got {type(key).__name__}"
    verbs = [
        lambda: core.try_acquire(key, 1, 0),
        lambda: core.decide(key, 1, 0),
        lambda: core.reserve(key, 1, None, 0),
        lambda: core.reset(key),
        lambda: core.decide_many([key], None, 0),
    ]
    for verb in verbs:
        with pytest.raises(TypeError, match=match):
            verb()
    assert core.stats()["live_keys"] == 0


def test_odd_keys_are_keys_like_any_other(impl) -> None:
    megabyte = "k" * (1 << 20)
    odd = [
        megabyte,
        megabyte[:-1] + "j",
        megabyte.encode(),
        b"\xff\xfe\x00" * 1000,  # not UTF-8
        "{user}:1",
        "user}:{1",
        "a:b:c",
        "\x00",
        "\udcff",  # lone surrogate
        "é",
        "é".encode(),
        "e\u0301",  # same text, different code points: a different key
    ]
    core = keyed(impl)
    assert all(core.try_acquire(key, 1, 0) for key in odd)
    assert not any(core.try_acquire(key, 1, 0) for key in odd)
    assert core.stats()["live_keys"] == len(odd)


def test_reset_forgets_only_that_key(impl) -> None:
    core = keyed(impl)
    for key in ("a", "b", 3):
        assert core.try_acquire(key, 1, 0)
    core.reset("b")
    core.reset("never seen")  # a no-op
    assert core.stats()["live_keys"] == 2
    assert core.try_acquire("b", 1, 0)
    assert not core.try_acquire("a", 1, 0)
    assert not core.try_acquire(3, 1, 0)


# ---- the table ----


def test_stats_of_a_new_table(impl) -> None:
    core = keyed(impl, max_keys=1000)
    assert core.max_keys == 1000
    assert core.stats() == {
        "live_keys": 0,
        "max_keys": 1000,
        "capacity": 16,
        "evictions": 0,
        "expired": 0,
        "memory_bytes": 16 * 2 * 8,  # fingerprint + tat per slot
    }


@pytest.mark.parametrize(
    ("algorithm", "words"),
    [("gcra", 1), ("leaky_bucket", 2), ("fixed_window", 2), ("sliding_window", 3)],
)
def test_idle_states_are_never_inserted(impl, algorithm: str, words: int) -> None:
    rate = Rate(3, 1.0)
    core = keyed(impl, rate, algorithm)
    assert core.decide("asked", 0, 0) == fresh(impl, rate, algorithm, 0, 0)
    assert core.decide("too big", 4, 0) == fresh(impl, rate, algorithm, 4, 0)
    assert core.stats()["live_keys"] == 0
    assert core.try_acquire("taken", 1, 0)
    stats = core.stats()
    assert stats["live_keys"] == 1
    assert stats["memory_bytes"] == 16 * (1 + words) * 8


def test_idle_states_are_dropped_on_growth_without_changing_decisions(impl) -> None:
    rate = Rate(10, 1.0)
    core = keyed(impl, rate)
    assert core.try_acquire("early", 1, 0)  # idle from 100 ms on
    for index in range(12):  # the 12th fills 16 slots past 3/4: growth
        assert core.try_acquire(index, 1, SECOND)
    stats = core.stats()
    assert (stats["live_keys"], stats["capacity"], stats["expired"]) == (12, 32, 1)
    assert stats["evictions"] == 0
    assert core.decide("early", 1, SECOND) == fresh(impl, rate, "gcra", 1, SECOND)


def test_full_table_evicts_and_counts(impl) -> None:
    core = keyed(impl, max_keys=4)
    for key in "abcd":
        assert core.try_acquire(key, 1, 0)
    assert core.try_acquire("e", 1, 0)
    stats = core.stats()
    assert (stats["live_keys"], stats["evictions"], stats["expired"]) == (4, 1, 0)
    # The evicted key starts over as if new (a cost-0 question inserts
    # nothing): the one over-admission.
    new = [key for key in "abcd" if core.decide(key, 0, 0).remaining == 1]
    assert len(new) == 1
    assert core.try_acquire(new[0], 1, 0)
    assert core.stats()["evictions"] == 2


def test_eviction_takes_the_state_closest_to_new(impl) -> None:
    core = keyed(impl, Rate(10, 1.0), max_keys=4)  # T = 100 ms
    for key, cost in (("b", 5), ("a", 1), ("d", 2), ("c", 3)):
        assert core.try_acquire(key, cost, 0)
    assert core.try_acquire("e", 1, 0)  # 16 slots: the sample sees them all
    assert core.stats()["evictions"] == 1
    assert core.decide("a", 0, 0).remaining == 10  # "a" (idle at 100 ms) went
    assert [core.decide(key, 0, 0).remaining for key in "bcd"] == [5, 7, 8]


def test_full_table_drops_idle_states_before_evicting(impl) -> None:
    core = keyed(impl, Rate(10, 1.0), max_keys=4)
    for key, cost in (("a", 1), ("b", 5), ("c", 3), ("d", 2)):
        assert core.try_acquire(key, cost, 0)
    assert core.try_acquire("e", 1, 250 * MS)  # "a" and "d" are idle by now
    stats = core.stats()
    assert (stats["live_keys"], stats["evictions"], stats["expired"]) == (3, 0, 2)


@pytest.mark.parametrize("max_keys", [1, 3, 10])
def test_live_keys_never_exceed_max_keys(impl, max_keys: int) -> None:
    core = keyed(impl, max_keys=max_keys)
    for index in range(200):
        assert core.try_acquire(f"user:{index}", 1, index)
        stats = core.stats()
        assert stats["live_keys"] == min(index + 1, max_keys)
        assert stats["evictions"] == max(0, index + 1 - max_keys)


@pytest.mark.parametrize("live", [1_000, 12_288, 12_289, 40_000])
def test_memory_per_live_gcra_key(impl, live: int) -> None:
    core = keyed(impl, Rate(1_000_000, 86400.0), max_keys=1_000_000)
    assert core.decide_many(numpy.arange(live, dtype=numpy.int64), 1, 0).all()
    stats = core.stats()
    assert stats["live_keys"] == live
    assert stats["memory_bytes"] == stats["capacity"] * 16
    assert stats["memory_bytes"] / live <= 48


@pytest.mark.parametrize("max_keys", [0, -1, 2.5, True, 2**33, "10", None])
def test_bad_max_keys(impl, max_keys) -> None:
    with pytest.raises(ValueError, match="max_keys"):
        keyed(impl, max_keys=max_keys)
    with pytest.raises(ValueError, match="max_keys"):
        KeyedLimiter("1/s", max_keys=max_keys)


# ---- batch decisions ----

COSTS = [None, 0, 2, "per key list", "per key array"]


def batch_costs(costs, count: int):
    if costs == "per key list":
        return [index % 4 for index in range(count)]
    if costs == "per key array":
        return numpy.arange(count, dtype=numpy.int64) % 4
    return costs


@pytest.mark.parametrize("costs", COSTS)
@pytest.mark.parametrize("kind", ["int64 ids", "str keys", "mixed keys"])
def test_decide_many_is_a_run_of_single_decisions(impl, kind: str, costs) -> None:
    rate = Rate(3, 1.0)
    if kind == "int64 ids":
        keys = numpy.array([5, 7, 5, -(2**63), 5, 2**63 - 1, 7, 5], dtype=numpy.int64)
        singles = keys.tolist()
    else:
        keys = ["a", "b", "a", "", "a", "é", "b", "a"]
        if kind == "mixed keys":
            keys[1::2] = [b"b", 7, 2**70, b"b"]
        singles = list(keys)
    batch, single = keyed(impl, rate), keyed(impl, rate)
    for now in (0, 400 * MS, 2 * SECOND):
        spent = batch_costs(costs, len(singles))
        allowed, waits = batch.decide_many(keys, spent, now, retry_after=True)
        each = spent if isinstance(spent, list) else [spent] * len(singles)
        if isinstance(spent, numpy.ndarray):
            each = spent.tolist()
        decisions = [
            single.decide(key, 1 if cost is None else cost, now)
            for key, cost in zip(singles, each, strict=True)
        ]
        assert allowed.dtype == numpy.bool_
        assert waits.dtype == numpy.float64
        assert allowed.tolist() == [decision.allowed for decision in decisions]
        assert waits.tolist() == [decision.retry_after for decision in decisions]
        assert batch.stats() == single.stats()
        only = batch.decide_many(keys, spent, now)  # again, without waits
        assert only.tolist() == [
            single.try_acquire(key, 1 if cost is None else cost, now)
            for key, cost in zip(singles, each, strict=True)
        ]


def test_batch_ids_are_the_int_keys(impl) -> None:
    core = keyed(impl)
    assert core.decide_many(numpy.array([7, -7], dtype=numpy.int64)).all()
    assert core.decide_many(numpy.array([8], dtype=numpy.int32)).all()
    assert core.decide_many(numpy.array([2**64 - 1], dtype=numpy.uint64)).all()
    assert not any(core.try_acquire(key) for key in (7, -7, 8, 2**64 - 1))
    assert [core.try_acquire("7"), core.try_acquire(b"8")] == [True, True]
    assert not core.decide_many([7, "7", b"8"], 1, None).any()
    assert core.try_acquire(True)
    assert core.decide_many(numpy.array([1], dtype=numpy.int64)).tolist() == [False]


def test_decide_many_of_nothing(impl) -> None:
    core = keyed(impl)
    for keys in ([], numpy.array([], dtype=numpy.int64)):
        allowed, waits = core.decide_many(keys, None, 0, retry_after=True)
        assert (allowed.shape, waits.shape) == ((0,), (0,))


BAD_BATCHES = [
    (["a", "b", 1.5, "c"], None, TypeError, "key must be"),
    (["a", "b", None], 1, TypeError, "key must be"),
    (["a", "b", "c"], [1, -1, 1], ValueError, "cost must be >= 0"),
    (["a", "b", "c"], [1, 1, 1.0], ValueError, "cost must be an int, got 1.0"),
    (["a", "b", "c"], -2, ValueError, "cost must be >= 0"),
    (["a", "b", "c"], [1, 1, 2**63], ValueError, "cost must be in"),
    (["a", "b", "c"], [1, 1], ValueError, "one cost per key"),
    (["a", "b", "c"], [1, 1, 1, 1], ValueError, "one cost per key"),
    ([1, 2, 3], numpy.array([1, -1, 1]), ValueError, "cost must be >= 0"),
    ([1, 2, 3], numpy.array([1, 1]), ValueError, "one cost per key"),
    ([1, 2, 3], numpy.array([1.0, 1.0, 1.0]), ValueError, "cost must be an int"),
    ([1, 2, 3], numpy.array([1, 1, 2**63], numpy.uint64), ValueError, "cost"),
]
# The int-keyed batches once more, as int64 arrays (the compiled GIL-free path).
BAD_BATCHES += [
    (numpy.array(keys, dtype=numpy.int64), costs, error, match)
    for keys, costs, error, match in BAD_BATCHES
    if all(type(key) is int for key in keys)
]


@pytest.mark.parametrize(("keys", "costs", "error", "match"), BAD_BATCHES)
def test_a_bad_batch_decides_nothing(impl, keys, costs, error, match: str) -> None:
    core = keyed(impl, Rate(2, 1.0))
    assert core.try_acquire("a", 1, 0)
    before = core.stats()
    probes = ["a", "b", "c", 1, 2, 3]
    remaining = [core.decide(key, 0, 0).remaining for key in probes]
    with pytest.raises(error, match=match):
        core.decide_many(keys, costs, 0, retry_after=True)
    assert core.stats() == before
    assert [core.decide(key, 0, 0).remaining for key in probes] == remaining
