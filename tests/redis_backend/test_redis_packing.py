"""The single decision's packed commands (Packer.fcall and Packer.single,
pieced together from bytes packed ahead of time) are exactly the generic
RESP packing of their arguments, for any key length, cost and time, and
the server decides them (a real redis-server); a batch's costs of ones
are msgpack's, and its mode is the same whether the caller says its keys
are distinct or the packer finds out."""

from __future__ import annotations

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from ratefuse.rates import build_specs, parse
from ratefuse.redis import RedisBackend, RedisLimiter
from ratefuse.redis._codec import Packer, _ones, pack_command
from ratefuse.redis._lean import entry_format
from ratefuse.redis._scripts import script
from ratefuse.redis._wire_limits import MAX_NOW_US, WireLimit, to_wire_limits

ALGORITHMS = ("gcra", "fixed_window", "sliding_window", "sliding_log")
RATES = ("10/s", "5/s; 100/h")


def packer_of(algorithm: str, rate: str) -> tuple[Packer, list[WireLimit]]:
    """`packer_of` is the packer of ``rate`` under ``algorithm``, and its
    limits."""
    limits = list(to_wire_limits(list(build_specs(parse(rate), algorithm))))
    return Packer(script(algorithm), limits), limits


PACKERS = {
    (algorithm, rate): packer_of(algorithm, rate)
    for algorithm in ALGORITHMS
    for rate in RATES
}

keys = st.binary(min_size=0, max_size=300)
costs = st.one_of(st.integers(0, 300), st.integers(0, 2**53 - 1))
times = st.one_of(st.none(), st.integers(0, MAX_NOW_US))
packers = st.sampled_from(sorted(PACKERS))


def limit_args(limits: list[WireLimit]) -> list[object]:
    """`limit_args` are the exact script's limit arguments: their count,
    then field, capacity, period and interval of each."""
    args: list[object] = [len(limits)]
    for limit in limits:
        args += [limit.field, limit.capacity, limit.period_us, limit.interval_us]
    return args


@given(packers, keys, costs, times)
def test_fcall_is_the_generic_packing(
    chosen: tuple[str, str], key: bytes, cost: int, now_us: int | None
) -> None:
    packer, limits = PACKERS[chosen]
    assert packer.script.function is not None
    fields = " ".join(limit.field for limit in limits)
    now = -1 if now_us is None else now_us
    assert packer.fcall(key, cost, now_us) == pack_command(
        "FCALL", packer.script.function, 1, key, now, cost, fields
    )


@given(packers, keys, costs, times)
def test_single_is_the_generic_packing(
    chosen: tuple[str, str], key: bytes, cost: int, now_us: int | None
) -> None:
    packer, limits = PACKERS[chosen]
    now = -1 if now_us is None else now_us
    lean = packer.single_script
    if lean is not packer.script:
        # One limit with a lean decider: its script, its four arguments
        # (the last the format of the limit's binary entry).
        (limit,) = limits
        span = limit.interval_us if chosen[0] == "gcra" else limit.period_us
        field = limit.field.encode()
        expected = pack_command(
            "EVALSHA",
            lean.sha,
            1,
            key,
            now,
            cost,
            field,
            limit.capacity,
            span,
            entry_format(field, chosen[0]),
        )
    else:
        expected = pack_command(
            "EVALSHA", packer.script.sha, 1, key, now, "s", cost, *limit_args(limits)
        )
    assert packer.single(key, cost, now_us) == expected


def test_the_server_decides_costs_and_times_packed_either_way(
    client, fresh_name
) -> None:
    # Costs above the table of small integers, an explicit time: what
    # the server decides is what the generic packing would have sent.
    backend = RedisBackend(client, timeout=5.0)
    try:
        limiter = RedisLimiter("1000/h", backend=backend, name=fresh_name())
        store = limiter._store
        assert store.decide_us("k", 300).remaining == 700
        assert store.decide_us("k", 255).remaining == 445
        assert not store.decide_us("k", 446).allowed
        later = store.decide_us("t", 1, now_us=2**51)
        assert (later.allowed, later.remaining) == (True, 999)
    finally:
        backend.close()


@given(st.integers(0, 70_000))
def test_a_batch_of_ones_packs_as_msgpack_does(count: int) -> None:
    assert _ones(count) == msgpack.packb([1] * count)


@given(
    packers,
    st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=40),
    st.lists(st.integers(0, 2**53 - 1), max_size=40) | st.just([]),
    times,
)
def test_a_batch_packs_the_same_told_or_not(
    chosen: tuple[str, str], keys: list[bytes], some: list[int], now_us: int | None
) -> None:
    # Costs all ones (the default) or any; the caller's distinct answer is
    # the one the packer finds itself.
    packer, _ = PACKERS[chosen]
    costs = (some + [1] * len(keys))[: len(keys)]
    distinct = len(set(keys)) == len(keys)
    packed = packer.batch(keys, costs, now_us)
    assert packer.batch(keys, costs, now_us, distinct) == packed
    assert packed.count(b"$1\r\nu\r\n" if distinct else b"$1\r\nm\r\n") == 1
    blob = msgpack.packb(costs)
    assert b"$%d\r\n%s\r\n" % (len(blob), blob) in packed


def test_repeated_subjects_in_a_batch_decide_in_order(client, fresh_name) -> None:
    # One subject three times in a call: the script tracks repeats ("m"),
    # told so by the subjects, not the keys.
    backend = RedisBackend(client, timeout=5.0)
    try:
        limiter = RedisLimiter("2/h", backend=backend, name=fresh_name())
        allowed = limiter.decide_many(["a", "b", "a", "a", True, 1, 1])
        assert allowed.tolist() == [True, True, True, False, True, True, False]
    finally:
        backend.close()
