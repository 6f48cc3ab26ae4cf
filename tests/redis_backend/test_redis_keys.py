"""The key schema: no caller-supplied key reaches another key or slot."""

from __future__ import annotations

import math
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot
from string_values import string_state

from ratefuse import Limiter, Rate
from ratefuse.redis import KEY_VERSION, KeySchema, RedisBackend, RedisLimiter
from ratefuse.redis._schema import key_version, subject_bytes

KEY_PATTERN = re.compile(
    rb"ratefuse:\{[0-9a-f]{32}\}:(gcra|fixed_window|sliding_window|sliding_log):v(\d+)"
)
HOSTILE = [
    "",
    "{",
    "}",
    "{a}",
    "a}{b",
    "}:{",
    ":",
    "ratefuse:{x}:gcra:v1",
    "ratefuse:{x}:gcra:v2",
    "\x00",
    "\ud800",  # a lone surrogate
    "é",
    "x" * (1 << 20),  # 1 MB
    b"",
    b"{a}",
    b"\xff\xfe{}",
    b"\x80" * (1 << 20),
    0,
    1,
    -1,
    2**64,
    -(2**1000),
    True,
]
SUBJECTS = st.one_of(st.text(), st.binary(), st.integers())


def has_the_shape(key: bytes) -> bool:
    """Whether ``key`` is a limiter key, ending with its algorithm's version."""
    match = KEY_PATTERN.fullmatch(key)
    return match is not None and int(match[2]) == key_version(match[1].decode())


def test_each_kind_of_key_has_its_version() -> None:
    # The "string" layout of gcra and the windows became binary in v3: old
    # and new processes never read each other's values as damage.
    assert [
        key_version(kind) for kind in ("gcra", "fixed_window", "sliding_window")
    ] == [
        3,
        3,
        3,
    ]
    assert key_version("fleet_breaker") == KEY_VERSION
    assert KeySchema("p", "", "n", "gcra").key("s").endswith(b"}:gcra:v3")


def test_keys_have_one_shape_and_length() -> None:
    schema = KeySchema("ratefuse", "", "api", "gcra")
    for subject in HOSTILE:
        key = schema.key(subject)
        assert has_the_shape(key), key
        assert len(key) == schema.key_length == 51


def test_hostile_keys_are_all_distinct_but_true_is_one() -> None:
    schema = KeySchema("ratefuse", "", "api", "gcra")
    keys = [schema.key(subject) for subject in HOSTILE]
    # True is the int 1, as a dict key would be; everything else differs.
    assert keys[HOSTILE.index(True)] == keys[HOSTILE.index(1)]
    assert len(set(keys)) == len(HOSTILE) - 1


def test_str_bytes_and_int_are_different_subjects() -> None:
    schema = KeySchema("ratefuse", "", "api", "gcra")
    assert len({schema.key("1"), schema.key(b"1"), schema.key(1)}) == 3


@settings(max_examples=300)
@given(first=SUBJECTS, second=SUBJECTS)
def test_subject_encoding_is_injective(first: object, second: object) -> None:
    if type(first) is not type(second) or first != second:
        assert subject_bytes(first) != subject_bytes(second)  # type: ignore[arg-type]


@given(subject=SUBJECTS, name=st.text(min_size=1), namespace=st.text())
def test_the_slot_is_the_tag_only(subject: object, name: str, namespace: str) -> None:
    schema = KeySchema("app", namespace, name, "sliding_log")
    key = schema.key(subject)  # type: ignore[arg-type]
    assert key_slot(key) == key_slot(schema.tag(subject))  # type: ignore[arg-type]
    assert KeySchema("app", namespace, name, "gcra").tag(subject) == schema.tag(subject)  # type: ignore[arg-type]


class Text(str):
    """A str subclass: a subject as its str value."""


@settings(max_examples=200)
@given(subjects=st.lists(SUBJECTS | st.sampled_from(HOSTILE), max_size=20))
def test_batch_keys_are_the_single_keys(subjects: list[object]) -> None:
    schema = KeySchema("ratefuse", "ns", "batch", "gcra")
    subjects = [*subjects, *subjects, True, Text("a")]  # cached the 2nd time
    expected = [KeySchema("ratefuse", "ns", "batch", "gcra").key(s) for s in subjects]
    assert schema.keys(subjects) == expected  # type: ignore[arg-type]
    assert schema.keys(subjects) == expected  # type: ignore[arg-type]


def test_name_and_namespace_separate_quotas() -> None:
    keys = {
        KeySchema("ratefuse", namespace, name, "gcra").key("user")
        for namespace, name in [("", "a"), ("", "b"), ("x", "a"), ("a", ""), ("", "ab")]
        if name
    }
    assert len(keys) == 4


@pytest.mark.parametrize("prefix", ["", "a{b", "a}", "a b", "é", "x" * 65, None])
def test_bad_prefix_is_refused(prefix: object) -> None:
    with pytest.raises(ValueError, match="prefix"):
        KeySchema(prefix, "", "api", "gcra")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", None, 5])
def test_bad_name_is_refused(client, name: object) -> None:
    with pytest.raises(ValueError, match="name"):
        RedisLimiter("5/s", backend=client, name=name)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [1.5, None, bytearray(b"a"), ("a",), object()])
def test_other_key_types_are_refused(client, fresh_name, key: object) -> None:
    with RedisLimiter("5/s", backend=client, name=fresh_name()) as limiter:
        with pytest.raises(TypeError, match="key"):
            limiter.decide(key)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key"):
            limiter.decide_many_decisions(["a", key])  # type: ignore[list-item]
        assert limiter.stats().fallbacks == 0


@pytest.mark.parametrize(
    "cost", [math.nan, math.inf, -math.inf, 1.0, -1, 2**63, "1", None]
)
def test_bad_costs_raise_as_in_the_local_engine(
    client, fresh_name, cost: object
) -> None:
    local = Limiter("5/s")
    with pytest.raises((TypeError, ValueError, OverflowError)) as expected:
        local.decide(cost)  # type: ignore[arg-type]
    with RedisLimiter("5/s", backend=client, name=fresh_name()) as limiter:
        with pytest.raises(type(expected.value)):
            limiter.decide("k", cost)  # type: ignore[arg-type]
        with pytest.raises(type(expected.value)):
            limiter.decide_many_decisions(["k"], [cost])  # type: ignore[list-item]
        assert limiter.stats().decisions == 0


@pytest.mark.parametrize("cost", [6, 2**40, 2**53, 2**63 - 1])
def test_costs_above_the_capacity_are_never_admitted(
    client, fresh_name, cost: int
) -> None:
    with RedisLimiter("5/s; 100/h", backend=client, name=fresh_name()) as limiter:
        decision = limiter.decide("k", cost)
        assert not decision.allowed
        assert decision.retry_after == math.inf
        assert decision.remaining == 5
        assert limiter.decide_many_decisions(["k"], [cost])[0] == decision


def test_hostile_keys_are_isolated_on_a_single_redis(client, fresh_name) -> None:
    # Other tests' keys (other features, other shapes) share the node.
    before = set(client.scan_iter("ratefuse:*"))
    with RedisLimiter("3/h", backend=client, name=fresh_name()) as limiter:
        for subject in HOSTILE:
            assert limiter.decide(subject).allowed
        decisions = limiter.decide_many_decisions(HOSTILE, [0] * len(HOSTILE))
        for subject, decision in zip(HOSTILE, decisions, strict=True):
            # One unit each: no key reached another (True is the int 1).
            assert decision.remaining == (1 if subject in (1, True) else 2), subject
        keys = set(client.scan_iter("ratefuse:*")) - before
        assert keys == {limiter._schema.key(subject) for subject in HOSTILE}
        assert all(has_the_shape(key) for key in keys)


def test_hostile_keys_are_isolated_on_a_cluster(
    cluster_client, cluster_backend, fresh_name
) -> None:
    limiter = RedisLimiter("3/h; 10/d", backend=cluster_backend, name=fresh_name())
    for subject in HOSTILE:
        # True is the int 1, whose 2 units were just taken: 1 is left.
        assert limiter.decide(subject, 2).allowed == (subject is not True)
    decisions = limiter.decide_many_decisions(HOSTILE, [0] * len(HOSTILE))
    for subject, decision in zip(HOSTILE, decisions, strict=True):
        assert decision.remaining == 1, subject
    schema = limiter._schema
    for subject in HOSTILE:
        key = schema.key(subject)
        # Every limit of the subject is in one value in the tag's slot.
        state = string_state(cluster_client.get(key), width=1)
        assert set(state) == {"3/3600000000/1200000000", "10/86400000000/8640000000"}
        assert cluster_client.cluster_keyslot(key) == key_slot(schema.tag(subject))
    assert limiter.stats().fallbacks == 0


def assert_ttl(
    client,
    limiter: RedisLimiter,
    subject: object,
    reset_after: float,
    decided: float,
    slack_ms: int = 0,
) -> None:
    """``decided``: time.monotonic() right after the decision came back;
    ``slack_ms``: how much later than the reset the key may expire (a
    sliding log's: an eighth of its longest period)."""
    ttl = client.pttl(limiter._schema.key(subject))  # type: ignore[arg-type]
    assert ttl != -1, f"{subject!r} has no TTL"
    if ttl != -2:  # -2: expired since (a 10 ms limit)
        # Never before the state is as if new: the expiry is the reset
        # rounded up to the next millisecond (+1 at most), and never 0,
        # unless the reset was over by the time PTTL ran (a 10 ms limit on
        # a loaded machine).
        late = (time.monotonic() - decided) * 1000 >= reset_after * 1000 - 1
        lowest = 0 if late else 1
        assert lowest <= ttl <= math.ceil(reset_after * 1000) + 1 + slack_ms


def test_every_key_has_a_ttl_that_is_never_zero(client, fresh_name) -> None:
    rates = ["1/10ms", "3/s", "2/s; 5/10s", "1000/h"]
    subjects = ["a", "b", "a", "c", "a"]
    for algorithm in ("gcra", "fixed_window", "sliding_window", "sliding_log"):
        for rate in rates:
            # Every decision from Redis: a denial the deny cache answers
            # reports reset_after as a lower bound (the local clock runs
            # from before the request was sent), not the key's expiry.
            with RedisLimiter(
                rate, algorithm, backend=client, name=fresh_name(), deny_cache=False
            ) as limiter:
                slack = 0
                if algorithm == "sliding_log":
                    longest = max(w.period_us for w in limiter._binding.wire_limits)
                    slack = longest // 8000
                for subject in subjects:
                    decision = limiter.decide(subject)
                    decided = time.monotonic()
                    assert_ttl(
                        client, limiter, subject, decision.reset_after, decided, slack
                    )
                latest = dict(
                    zip(subjects, limiter.decide_many_decisions(subjects), strict=True)
                )
                decided = time.monotonic()
                for subject, decision in latest.items():
                    assert_ttl(
                        client, limiter, subject, decision.reset_after, decided, slack
                    )


def test_a_query_creates_no_key(client, fresh_name) -> None:
    for algorithm in ("gcra", "fixed_window", "sliding_window", "sliding_log"):
        with RedisLimiter(
            "5/s; 9/m", algorithm, backend=client, name=fresh_name()
        ) as limiter:
            assert limiter.decide("fresh", 0).remaining == 5
            assert not limiter.decide("fresh", 6).allowed
            assert client.exists(limiter._schema.key("fresh")) == 0


def test_reset_forgets_the_key(client, fresh_name) -> None:
    with RedisLimiter("2/h", backend=client, name=fresh_name()) as limiter:
        assert limiter.try_acquire("k", 2)
        assert not limiter.try_acquire("k")
        limiter.reset("k")
        assert limiter.decide("k", 0).remaining == 2


@pytest.mark.parametrize(
    ("limits", "algorithm", "field"),
    [
        (
            Rate(2001, 0.001),
            "gcra",
            "interval \\(period / limit\\) must be at least 1 micro",
        ),
        (Rate(1, 5e-7), "fixed_window", "period must be at least 1 micro"),
        (Rate(10, 86400 * 365 * 8, burst=100), "gcra", "burst \\* period / limit"),
        ("1000000/30d", "sliding_window", "limit \\* period"),
        ("5/s", "leaky_bucket", "algorithm"),
        ("100001/s", "sliding_log", "sliding_log limit"),
    ],
)
def test_configurations_beyond_lua_doubles_are_refused(
    client, limits: object, algorithm: str, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        RedisLimiter(limits, algorithm, backend=RedisBackend(client), name="x")


def test_refusals_name_the_value(client) -> None:
    with pytest.raises(ValueError, match=r"999 ns"):
        RedisBackend(client).bind(
            [
                __import__("ratefuse.core.spec", fromlist=["LimitSpec"]).LimitSpec(
                    "gcra", 1, 999, 999
                )
            ],
            "x",
        )


@pytest.mark.parametrize(
    ("algorithm", "width"),
    [("gcra", 1), ("fixed_window", 2), ("sliding_window", 3), ("sliding_log", 0)],
)
def test_limiters_sharing_a_name_share_the_limits_they_have_in_common(
    client, fresh_name, algorithm: str, width: int
) -> None:
    name = fresh_name()
    one = RedisLimiter("3/h", algorithm, backend=client, name=name)
    both = RedisLimiter("3/h; 2/d", algorithm, backend=client, name=name)
    assert both.decide("k").remaining == 1  # 2/d binds
    # The single limit reads (and rewrites) its entry of the shared value
    # and keeps the other limit's entry as it was.
    assert one.decide("k").remaining == 1
    if width:
        state = string_state(client.get(one._schema.key("k")), width)
        assert len(state) == 2
    decision = both.decide("k")
    assert (decision.allowed, decision.remaining) == (True, 0)
    denied = both.decide("k")
    assert not denied.allowed
    assert one.decide("k", 0).remaining == 0
    assert one.stats().fallbacks == both.stats().fallbacks == 0
