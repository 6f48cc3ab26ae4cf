"""The compiled lease table and its reference make the same decisions: random
traces of grants, gates, takes, failed refills and resets on a few keys,
with time moving forward, give identical answers and counters."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

KEYS = st.sampled_from(["a", "b", b"a", 7])
OPERATION = st.one_of(
    st.tuples(st.just("take"), KEYS, st.integers(0, 12)),
    st.tuples(
        st.just("grant"),
        KEYS,
        st.integers(0, 10),  # units
        st.integers(0, 300),  # lifetime
        st.integers(0, 6),  # low water
    ),
    st.tuples(st.just("deny"), KEYS, st.integers(0, 8), st.integers(-5, 100)),
    st.tuples(st.just("refill_failed"), KEYS, st.integers(0, 50)),
    st.tuples(st.just("reset"), KEYS),
)
STEP = st.tuples(st.integers(0, 40), OPERATION)


def run(table, trace):
    now = 0
    answers = []
    for elapsed, (name, key, *args) in trace:
        now += elapsed
        if name == "take":
            answers.append(table.take(key, args[0], now))
        elif name == "grant":
            units, lifetime, low = args
            table.grant(key, units, now + lifetime, low, now)
        elif name == "deny":
            table.deny(key, args[0], now + args[1], now)
        elif name == "refill_failed":
            table.refill_failed(key, now + args[0])
        else:
            table.reset(key)
        answers.append(
            (
                table.balance(key, now),
                table.retry_after(key, now),
                table.demand(key, now),
                len(table),
            )
        )
    return answers, table.stats()


@settings(max_examples=300, deadline=None)
@given(st.lists(STEP, max_size=60), st.integers(1, 3))
def test_compiled_and_reference_tables_agree(compiled, reference, trace, keys) -> None:
    fast = compiled.module("core._lease").LeaseTable(max_keys=keys, max_cost=9)
    spec = reference.module("core._lease").LeaseTable(max_keys=keys, max_cost=9)
    assert run(fast, trace) == run(spec, trace)
