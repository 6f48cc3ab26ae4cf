"""Batches: the script's batch path and the client's Decisions.

The script decides a batch of a single-limit limiter on its own path (the
prelude's ``decide_batch``), and falls back to the general one for values
it does not recognise: the same decisions run one key at a time and as one
batch, under two names on the real node, must give the same verdicts and
store the same values. The client builds each call's Decisions as its
reply arrives: they must be the batch's verdicts as Decisions, sync and
async, on the node and the cluster. Time is injected throughout.
"""

from __future__ import annotations

import asyncio
import math

import msgpack
import pytest
import redis
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse.core.errors import BackendError
from ratefuse.rates import build_specs, to_rates
from ratefuse.redis import AsyncRedisBackend, RedisBackend
from ratefuse.redis._binding import Binding
from ratefuse.redis._exchange import Counters, Exchange, plan_calls

ALGORITHMS = ("gcra", "fixed_window", "sliding_window", "sliding_log")
# Injected times in 2096: keys expire on the injected clock (PXAT).
BASE_US = 4_000_000_000_000_000
# New keys, a key of this limit alone, a key that also holds another
# limiter's limit (same name), a key whose state the batch will not change.
SUBJECTS = ["new", "own", "shared", "spent", 7, b"own"]
COSTS = [1, 1, 1, 0, 2, 1]


def run(
    client, backend: RedisBackend, algorithm: str, name: str, batched: bool
) -> tuple[list[object], list[object]]:
    """Seeds ``name``'s keys, decides SUBJECTS twice (then a batch with a
    repeated key), one by one or batched; the verdicts, and each key's
    value and expiry."""
    one = backend.bind(build_specs(to_rates("3/h"), algorithm), name)
    both = backend.bind(build_specs(to_rates("3/h; 2/d"), algorithm), name)
    both.decide_us("shared", 1, now_us=BASE_US)
    one.decide_us("own", 1, now_us=BASE_US)
    one.decide_us(b"own", 3, now_us=BASE_US)
    verdicts: list[object] = []
    rounds = [(SUBJECTS, COSTS), (SUBJECTS, COSTS), (["own", "new", "own"], [1, 0, 1])]
    for step, (subjects, costs) in enumerate(rounds, start=1):
        now = BASE_US + step * 1_000_000
        if batched:
            verdicts += one.decide_many_us(subjects, costs, now_us=now)
        else:
            verdicts += [
                one.decide_us(subject, cost, now_us=now)
                for subject, cost in zip(subjects, costs, strict=True)
            ]
    values: list[object] = []
    for subject in SUBJECTS:
        key = one.binding.schema.key(subject)
        if client.type(key) == b"hash":
            values.append(sorted(client.hgetall(key).items()))
        else:
            values.append(client.get(key))
        # Absolute, on the injected clock: the same in both runs.
        values.append(client.pexpiretime(key))
    return verdicts, values


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_batch_decides_and_stores_as_one_key_calls(
    client, fresh_name, algorithm: str
) -> None:
    with RedisBackend(client, timeout=5.0) as backend:
        single = run(client, backend, algorithm, fresh_name(), batched=False)
        calls = backend.stats().calls
        batch = run(client, backend, algorithm, fresh_name(), batched=True)
        # Three seeds, then one call a batch (the script is loaded by now).
        assert backend.stats().calls - calls == 3 + 3
    assert batch == single
    verdicts, values = batch
    assert all(value is not None for value in values[:6:2])  # new, own, shared
    assert any(not verdict.allowed for verdict in verdicts)  # type: ignore[attr-defined]


# Repeated subjects, a cost of 0 and one above every capacity (retry_after
# inf); with chunk=2 a batch is several calls, one-key and msgpack ones.
BATCH_SUBJECTS = ["a", b"a", 1, "b", "a", "{x}", "c"]
BATCH_COSTS = [1, 2, 0, 1, 2, 1, 10**6]


def fields(decision: object) -> tuple[object, ...]:
    return tuple(
        getattr(decision, name)
        for name in ("allowed", "remaining", "retry_after", "reset_after", "limit")
    )


@pytest.mark.parametrize("where", ["node", "cluster"])
def test_batch_decisions_are_built_from_the_verdicts_as_they_come(
    redis_node, redis_cluster, fresh_name, where: str
) -> None:
    # decide_many builds each call's Decisions as its reply arrives; they
    # must be the verdicts of decide_many_raw as Decisions, sync and async.
    port = redis_node.port if where == "node" else redis_cluster.ports[0]
    specs = build_specs(to_rates("3/h; 2/d"), "gcra")
    client: redis.Redis = (
        redis.Redis(port=port)
        if where == "node"
        else redis.RedisCluster(host="127.0.0.1", port=port)
    )
    raw_name, sync_name, async_name = fresh_name(), fresh_name(), fresh_name()
    expected, got = [], []
    with RedisBackend(client, chunk=2, timeout=5.0) as backend:
        raw = backend.bind(specs, raw_name)
        built = backend.bind(specs, sync_name)
        for step in range(3):
            now = BASE_US + step * 1_000_000
            verdicts = raw.decide_many_raw(BATCH_SUBJECTS, BATCH_COSTS, now)
            expected.append([fields(raw.binding.decision(v)) for v in verdicts])
            decisions = built.decide_many(BATCH_SUBJECTS, BATCH_COSTS, now)
            got.append([fields(decision) for decision in decisions])
    client.close()

    async def run() -> list[list[tuple[object, ...]]]:
        client = (
            redis.asyncio.Redis(port=port)
            if where == "node"
            else redis.asyncio.RedisCluster(host="127.0.0.1", port=port)
        )
        out = []
        async with AsyncRedisBackend(client, chunk=2, timeout=5.0) as backend:
            store = backend.bind(specs, async_name)
            for step in range(3):
                now = BASE_US + step * 1_000_000
                decisions = await store.decide_many(BATCH_SUBJECTS, BATCH_COSTS, now)
                out.append([fields(decision) for decision in decisions])
        await client.aclose()
        return out

    assert got == expected
    assert asyncio.run(run()) == expected
    flat = [item for batch in expected for item in batch]
    assert {item[0] for item in flat} == {True, False}
    assert math.inf in {item[2] for item in flat}
    assert {item[4] for item in flat} == {2, 3}  # both limits bound


# Random traces: a few subjects (so keys repeat within a batch), costs 0-3
# (3 is above the 2/h capacity: never admitted), time steps that cross
# window edges and refills; some subjects first hold another limiter's limit.
traces = st.lists(
    st.tuples(
        st.integers(0, 4_000_000_000),  # microseconds since the last batch
        st.lists(
            st.tuples(st.sampled_from(["a", "b", b"a", 5, "c"]), st.integers(0, 3)),
            min_size=1,
            max_size=8,
        ),
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=40, deadline=None)
@given(trace=traces, algorithm=st.sampled_from(ALGORITHMS), shared=st.booleans())
def test_random_batches_decide_and_store_as_one_key_calls(
    node_backend, redis_node, fresh_name, trace, algorithm: str, shared: bool
) -> None:
    specs = build_specs(to_rates("2/h"), algorithm)
    other = build_specs(to_rates("2/h; 5/d"), algorithm)
    client = redis.Redis(port=redis_node.port)
    outcomes = []
    try:
        for batched in (False, True):
            name = fresh_name()
            store = node_backend.bind(specs, name)
            if shared:  # "a" also holds a limit of another limiter
                node_backend.bind(other, name).decide_us("a", 1, now_us=BASE_US)
            now, verdicts, stored = BASE_US, [], []
            for step, batch in trace:
                now += step
                subjects = [subject for subject, _ in batch]
                costs = [cost for _, cost in batch]
                if batched:
                    verdicts += store.decide_many_us(subjects, costs, now_us=now)
                else:
                    verdicts += [
                        store.decide_us(subject, cost, now_us=now)
                        for subject, cost in batch
                    ]
                for subject in ("a", "b", b"a", 5, "c"):
                    key = store.binding.schema.key(subject)
                    value = (
                        sorted(client.hgetall(key).items())
                        if client.type(key) == b"hash"
                        else client.get(key)
                    )
                    stored.append((value, client.pexpiretime(key)))
            outcomes.append((verdicts, stored))
    finally:
        client.close()
    assert outcomes[1] == outcomes[0]


def test_an_unreadable_batch_reply_fails_its_call_only() -> None:
    # A reply the client cannot read (a msgpack scalar, bytes that are not
    # msgpack) fails that call's decisions with BackendError; the other
    # calls keep their verdicts, and no transport failure is seen.
    binding = Binding(build_specs(to_rates("3/h"), "gcra"), "u", "ratefuse", "")
    keys = [b"k1", b"k2", b"k3", b"k4", b"k5", b"k6"]
    calls = plan_calls(binding.packer, keys, [1] * 6, None, False, 2)
    exchange = Exchange(binding.packer, calls, 6, None, Counters())
    plan = exchange.next_round()
    assert plan is not None
    ((_, sent),) = plan
    exchange.receive(sent[0], msgpack.packb([1, 2, 0, 1_200_000, 0] * 2))
    exchange.receive(sent[1], msgpack.packb(7))
    exchange.receive(sent[2], b"\xc1")
    assert exchange.next_round() is None
    assert [type(outcome) for outcome in exchange.outcomes] == [tuple] * 2 + [
        BackendError
    ] * 4
    for outcome in exchange.outcomes[2:]:
        assert "unreadable script reply" in str(outcome)
    assert exchange.failures == {}
