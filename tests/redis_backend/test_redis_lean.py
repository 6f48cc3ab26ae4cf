"""The lean single decisions (lua/lean.lua): one limit of gcra, a fixed or
a sliding window, on FCALL of the library and on the lean EVALSHA
script (both paths, by the script_path parametrization), decide exactly
as the reference cores, in every reply form: one integer, the sliding
window's three integers for limits too large for one, and a fixed
window too large for one going to the general path; a compound of two
gcra limits on FCALL (one integer or two). Keys written by the
general scripts (what an older client wrote) decide alike, and a write
in the same window keeps the key's expiry."""

from __future__ import annotations

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from script_path_support import force_path
from string_values import string_state
from test_redis_differential import (
    BASE_US,
    EXAMPLES,
    Reference,
    bind,
    run_trace,
    to_ns,
    traces,
)

from ratefuse.core.spec import LimitSpec
from ratefuse.rates import SLIDING_LOG_MAX_LIMIT
from ratefuse.redis import RedisBackend
from ratefuse.redis._codec import Packer
from ratefuse.redis._lean import LeanLimit
from ratefuse.redis._script_paths import ScriptPath
from ratefuse.redis._scripts import LEAN_ALGORITHMS, lean_script, script
from ratefuse.redis._wire_limits import to_wire_limits


@st.composite
def large_specs(draw: st.DrawFn, algorithm: str) -> LimitSpec:
    """Limits whose windows' lean payload may not fit one integer."""
    period = draw(st.integers(1_000, 10_000_000))
    if algorithm == "gcra":
        # tau up to 10**12 us: a pair's two backlogs may not fit one integer.
        capacity = draw(st.integers(1, 1000))
        interval = draw(st.integers(1, 10**9))
        return LimitSpec("gcra", capacity, capacity * interval, interval)
    # A fixed window's limit is bounded by nothing but the costs (2**53).
    top = 2**40 if algorithm == "fixed_window" else min(2**50 // period, 10**9)
    if algorithm == "sliding_log":
        top = SLIDING_LOG_MAX_LIMIT  # its ring's cap
    return LimitSpec(algorithm, draw(st.integers(1, top)), period, 0)


@pytest.mark.parametrize("algorithm", LEAN_ALGORITHMS)
@EXAMPLES
@given(data=st.data())
def test_large_limits_decide_as_the_reference(
    node_backend, fresh_name, algorithm: str, data: st.DataObject
) -> None:
    spec = data.draw(large_specs(algorithm))
    trace = data.draw(traces(spec.period_ns, spec.capacity))
    run_trace(bind(node_backend, [spec], fresh_name), [spec], trace, BASE_US)


@EXAMPLES
@given(data=st.data())
def test_gcra_pairs_decide_as_the_reference(
    node_backend, fresh_name, data: st.DataObject
) -> None:
    # Small and large taus: the library's pair replies one integer or two.
    specs = [data.draw(large_specs("gcra")), data.draw(large_specs("gcra"))]
    trace = data.draw(
        traces(min(s.period_ns for s in specs), min(s.capacity for s in specs))
    )
    run_trace(bind(node_backend, specs, fresh_name), specs, trace, BASE_US)


def test_reply_forms_follow_the_limit() -> None:
    small = to_wire_limits([LimitSpec("sliding_window", 100, 1_000_000_000, 0)])
    assert LeanLimit.of("sliding_window", small) is not None
    huge = to_wire_limits([LimitSpec("fixed_window", 2**40, 2**20 * 1000, 0)])
    # A fixed window whose payload reaches 2**53 stays on the general path.
    assert LeanLimit.of("fixed_window", huge) is None
    assert Packer(script("fixed_window"), huge).single_script == script("fixed_window")
    packer = Packer(
        script("gcra"), to_wire_limits([LimitSpec("gcra", 5, 10**9, 2 * 10**8)])
    )
    assert packer.single_script == lean_script("gcra")
    two = [
        LimitSpec("gcra", 5, 10**9, 2 * 10**8),
        LimitSpec("gcra", 50, 10**10, 2 * 10**8),
    ]
    assert Packer(script("gcra"), to_wire_limits(two)).single_script == script("gcra")


def _general(
    client: redis.Redis, spec: LimitSpec, key: str, cost: int, now: int
) -> list[int]:
    # The general script, as any client before the lean path sent it.
    (wire,) = to_wire_limits([to_ns(spec)])
    general = script(spec.algorithm)
    client.script_load(general.source)
    args = (
        now,
        "s",
        cost,
        1,
        wire.field,
        wire.capacity,
        wire.period_us,
        wire.interval_us,
    )
    return client.evalsha(general.sha.decode(), 1, key, *args)  # type: ignore[no-any-return]


@pytest.mark.parametrize("algorithm", LEAN_ALGORITHMS)
@EXAMPLES
@given(data=st.data())
def test_keys_the_general_scripts_wrote_decide_alike(
    node_backend, client, fresh_name, algorithm: str, data: st.DataObject
) -> None:
    from test_redis_differential import limit_specs

    spec = data.draw(limit_specs(algorithm))
    trace = data.draw(traces(spec.period_ns, spec.capacity))
    general = data.draw(
        st.lists(st.booleans(), min_size=len(trace), max_size=len(trace))
    )
    store = bind(node_backend, [spec], fresh_name)
    key = store.binding.schema.key("subject")
    reference = Reference([spec])
    now = BASE_US
    span = spec.interval_ns * spec.capacity if algorithm == "gcra" else spec.period_ns
    latest = now
    for index, ((step, cost), old) in enumerate(zip(trace, general, strict=True)):
        now = max(BASE_US, now + step, latest - span)
        latest = max(latest, now)
        cost = store.binding.cost(cost)
        if old:
            got = _general(client, spec, key.decode(), cost, now)
            actual = (got[0] == 1, *got[1:4], spec.capacity)
        else:
            verdict = store.decide_us("subject", cost, now_us=now)
            actual = (*verdict[:4], spec.capacity)
        assert actual == reference.decide(cost, now), f"step {index}: {old=} {cost=}"


@pytest.mark.parametrize("algorithm", ["fixed_window", "sliding_window"])
def test_a_write_in_the_same_window_keeps_the_expiry(
    node_backend, client, fresh_name, algorithm: str
) -> None:
    spec = LimitSpec(algorithm, 10, 60_000_000, 0)
    store = bind(node_backend, [spec], fresh_name)
    key = store.binding.schema.key("subject")
    start = BASE_US - BASE_US % 60_000_000
    assert store.decide_us("subject", 1, now_us=start + 5).allowed
    assert (
        client.pexpiretime(key)
        == (start + (2 if "sliding" in algorithm else 1) * 60_000_000) // 1000 + 1
    )
    # A later expiry (another limit's, beside this one) shows KEEPTTL: a
    # PXAT would set the window's own again.
    client.pexpireat(key, client.pexpiretime(key) + 5000)
    expiry = client.pexpiretime(key)
    assert store.decide_us("subject", 2, now_us=start + 30_000_000).allowed
    width = 3 if "sliding" in algorithm else 2
    ((_, count, *_),) = string_state(client.get(key), width).values()
    assert count == 3
    assert client.pexpiretime(key) == expiry


def test_gcra_keeps_the_expiry_while_its_millisecond_holds(
    node_backend, client, fresh_name
) -> None:
    # 100 units of 10 us: a burst moves tat by 10 us per admission.
    spec = LimitSpec("gcra", 100, 1_000_000, 10)
    store = bind(node_backend, [spec], fresh_name)
    key = store.binding.schema.key("subject")
    start = BASE_US - BASE_US % 1000
    assert store.decide_us("subject", 1, now_us=start).allowed
    assert client.pexpiretime(key) == (start + 10) // 1000 + 1
    # A later expiry shows KEEPTTL: a PXAT would set tat's own again.
    client.pexpireat(key, (start + 10) // 1000 + 5000)
    assert store.decide_us("subject", 50, now_us=start).allowed
    assert list(string_state(client.get(key), 1).values()) == [[start + 510]]
    assert client.pexpiretime(key) == (start + 10) // 1000 + 5000
    assert store.decide_us("subject", 49, now_us=start).allowed
    assert client.pexpiretime(key) == (start + 1000) // 1000 + 1


def test_a_gcra_pair_keeps_the_expiry_while_its_millisecond_holds(
    client, fresh_name
) -> None:
    # The library's lean pair (Functions only: EVALSHA decides a pair on
    # the general script), as one limit's, for the later tat.
    with RedisBackend(client) as backend:
        force_path(backend, ScriptPath.FUNCTIONS)
        specs = [
            LimitSpec("gcra", 100, 1_000_000, 10),
            LimitSpec("gcra", 200, 4000, 20),
        ]
        store = bind(backend, specs, fresh_name)
        key = store.binding.schema.key("subject")
        start = BASE_US - BASE_US % 1000
        assert store.decide_us("subject", 1, now_us=start).allowed
        assert client.pexpiretime(key) == (start + 20) // 1000 + 1
        client.pexpireat(key, (start + 20) // 1000 + 5000)
        assert store.decide_us("subject", 40, now_us=start).allowed
        assert sorted(string_state(client.get(key), 1).values()) == [
            [start + 410],
            [start + 820],
        ]
        assert client.pexpiretime(key) == (start + 20) // 1000 + 5000
        assert store.decide_us("subject", 9, now_us=start).allowed
        assert client.pexpiretime(key) == (start + 1000) // 1000 + 1


def test_a_gcra_pair_on_the_servers_clock(node_backend, fresh_name) -> None:
    # 2 an hour and 3 a day, on the server's TIME (the library's fast
    # path): two admitted, then the hour's limit binds.
    hour = LimitSpec("gcra", 2, 3_600_000_000, 1_800_000_000)
    day = LimitSpec("gcra", 3, 86_400_000_000, 28_800_000_000)
    store = bind(node_backend, [hour, day], fresh_name)
    first, second, third = (store.decide_us("subject") for _ in range(3))
    assert (first.allowed, first.remaining, first.binding) == (True, 1, 0)
    assert (second.allowed, second.remaining) == (True, 0)
    assert (third.allowed, third.binding) == (False, 0)
    # The hour's bucket frees one unit in at most half an hour.
    assert 1_799_000_000 < third.retry_after_us <= 1_800_000_000
    assert 0 < third.reset_after_us <= 2 * 28_800_000_000
