"""The lease table core, both implementations, on a fixed time grid: leases
are spent oldest first and expire unused, the low-water mark starts one
refill, the deny gate refuses costs >= its cost until its time, the table
is bounded, and the public fast path calls back only on LOW and MISS."""

from __future__ import annotations

import pytest

T0, T1, T2, T3, T4, T5 = 0, 10, 20, 50, 100, 200


@pytest.fixture
def core(impl):
    return impl.module("core._lease")


def test_unknown_key_misses(core) -> None:
    table = core.LeaseTable()
    assert table.take("k", 1, T0) == core.MISS
    assert table.balance("k", T0) == 0
    assert table.retry_after("k", T0) == 0
    assert table.demand("k", T0) == (0, 0)


def test_a_lease_is_spent_then_refilled_once_below_low_water(core) -> None:
    table = core.LeaseTable()
    table.grant("k", 5, T4, 2, T0)
    steps = [
        (1, core.HIT, 4),
        (2, core.HIT, 2),  # 2 is not below the mark of 2
        (1, core.LOW, 1),  # below it: one refill starts
        (1, core.HIT, 0),  # pending: no second LOW
        (1, core.MISS, 0),  # dry before the refill landed: ask the fleet
    ]
    for cost, result, balance in steps:
        assert table.take("k", cost, T1) == result, (cost, result)
        assert table.balance("k", T1) == balance
    assert table.demand("k", T2) == (5, T2)
    stats = table.stats()
    assert (stats["hits"], stats["denials"], stats["keys"]) == (4, 0, 1)


def test_unused_units_expire_with_their_lease(core) -> None:
    table = core.LeaseTable()
    table.grant("k", 5, T4, 0, T0)
    assert table.take("k", 2, T4 - 1) == core.HIT
    assert table.take("k", 1, T4) == core.MISS  # the 3 left expired
    assert table.stats()["units_expired"] == 3
    assert table.balance("k", T4) == 0


def test_a_refill_that_arrives_early_is_spent_after_the_current_lease(core) -> None:
    table = core.LeaseTable()
    table.grant("k", 3, T4, 0, T0)
    table.grant("k", 4, T5, 0, T1)
    assert table.balance("k", T1) == 7
    assert table.take("k", 5, T2) == core.HIT  # 3 from the first, 2 from the next
    assert table.balance("k", T4) == 2  # the first lease is empty: nothing expires
    assert table.stats()["units_expired"] == 0
    assert table.take("k", 1, T5) == core.MISS
    assert table.stats()["units_expired"] == 2


def test_a_third_lease_joins_the_newer_one_without_extending_its_life(core) -> None:
    table = core.LeaseTable()
    table.grant("k", 1, T3, 0, T0)
    table.grant("k", 1, T4, 0, T0)
    table.grant("k", 1, T5, 0, T0)
    assert table.balance("k", T3) == 2  # the first expired
    assert table.balance("k", T4) == 0  # the joined two expire at T4, not T5
    assert table.stats()["units_expired"] == 3


def test_the_deny_gate_refuses_costs_from_its_cost_until_its_time(core) -> None:
    table = core.LeaseTable()
    table.deny("k", 3, T3, T0)
    assert table.take("k", 2, T1) == core.MISS
    assert table.take("k", 3, T1) == core.DENIED
    assert table.take("k", 9, T1) == core.DENIED
    assert table.retry_after("k", T1) == T3 - T1
    assert table.take("k", 3, T3) == core.MISS
    assert table.retry_after("k", T3) == 0
    table.deny("other", 1, T1, T1)  # not in the future: nothing cached
    assert len(table) == 1


def test_a_gate_applies_only_beyond_the_balance_and_a_grant_opens_it(core) -> None:
    table = core.LeaseTable()
    table.grant("k", 2, T5, 0, T0)
    table.deny("k", 1, T3, T0)
    assert table.take("k", 2, T1) == core.HIT  # the balance covers it
    assert table.take("k", 1, T1) == core.DENIED
    table.grant("k", 1, T5, 0, T2)
    assert table.take("k", 1, T2) == core.HIT


def test_a_failed_refill_is_not_retried_before_its_time(core) -> None:
    table = core.LeaseTable()
    table.grant("k", 10, T5, 8, T0)
    assert table.take("k", 3, T1) == core.LOW
    table.refill_failed("k", T3)
    assert table.take("k", 1, T2) == core.HIT  # backing off
    assert table.take("k", 1, T3) == core.LOW


def test_the_table_is_bounded_and_evicts_the_oldest_key(core) -> None:
    table = core.LeaseTable(max_keys=2)
    for key in ("a", "b", "c"):
        table.grant(key, 1, T5, 0, T0)
    assert len(table) == 2
    assert table.balance("a", T1) == 0
    assert table.stats()["evictions"] == 1
    table.reset("b")
    assert table.take("b", 1, T1) == core.MISS


@pytest.mark.parametrize("max_keys", [0, -1, True, 1.5, "3"])
def test_bad_max_keys_names_the_field(core, max_keys) -> None:
    with pytest.raises(ValueError, match="max_keys"):
        core.LeaseTable(max_keys=max_keys)


def test_a_negative_cost_is_refused(core) -> None:
    with pytest.raises(ValueError, match="cost"):
        core.LeaseTable().take("k", -1, T0)


def test_str_bytes_and_int_keys_are_distinct_and_true_is_one(core) -> None:
    table = core.LeaseTable()
    table.grant(1, 1, T5, 0, T0)
    assert table.take("1", 1, T1) == core.MISS
    assert table.take(b"1", 1, T1) == core.MISS
    assert table.take(True, 1, T1) == core.HIT  # as a dict key, True is 1


class Calls:
    """Records the fast path's callbacks."""

    def __init__(self) -> None:
        self.misses: list[tuple[object, object]] = []
        self.lows: list[object] = []

    def on_miss(self, key: object, cost: object) -> bool:
        self.misses.append((key, cost))
        return True

    def on_low(self, key: object) -> None:
        self.lows.append(key)


def test_try_acquire_answers_hits_and_denials_and_calls_back_otherwise(core) -> None:
    calls = Calls()
    now = [T1]
    table = core.LeaseTable(10, calls.on_miss, calls.on_low, lambda: now[0])
    assert table.try_acquire("k") is True  # a miss: on_miss answers
    assert calls.misses == [("k", 1)]
    table.grant("k", 4, T4, 2, T0)
    assert table.try_acquire("k") is True
    assert table.try_acquire("k", 2) is True  # LOW
    assert calls.lows == ["k"]
    table.deny("k", 1, T3, T1)
    assert table.try_acquire("k", 2) is False  # beyond the balance, gate closed
    now[0] = T4
    assert table.try_acquire("k") is True  # expired: a miss
    assert calls.misses[-1] == ("k", 1)


@pytest.mark.parametrize(
    ("key", "cost"),
    [("k", 1.0), ("k", True), ("k", -1), ("k", 2**64), (1.0, 1), (["k"], 1)],
)
def test_try_acquire_hands_anything_unusual_to_the_miss_path(core, key, cost) -> None:
    calls = Calls()
    table = core.LeaseTable(10, calls.on_miss, calls.on_low, lambda: T1)
    table.grant("k", 100, T4, 0, T0)
    table.grant(1, 100, T4, 0, T0)
    assert table.try_acquire(key, cost) is True
    assert calls.misses == [(key, cost)]


@pytest.mark.parametrize("cost", [2**63, 2**64, 2**70])
def test_a_cost_beyond_int64_goes_to_the_miss_path_past_a_closed_gate(
    core, cost
) -> None:
    # The miss path validates and raises for such a cost; a closed gate
    # must not answer it first (the reference core denied it, the compiled
    # one called on_miss).
    calls = Calls()
    table = core.LeaseTable(10, calls.on_miss, calls.on_low, lambda: T1)
    table.deny("k", 1, T4, T0)
    assert table.try_acquire("k", cost) is True
    assert calls.misses == [("k", cost)]


def test_try_acquire_without_callbacks_denies_a_miss(core) -> None:
    assert core.LeaseTable().try_acquire("k") is False


def test_a_cost_above_max_cost_is_never_a_hit(core) -> None:
    table = core.LeaseTable(max_cost=5)
    table.grant("k", 5, T5, 0, T0)
    table.grant("k", 5, T5, 0, T0)
    assert table.take("k", 6, T1) == core.MISS  # 10 held, but 6 > 5
    assert table.take("k", 5, T1) == core.HIT
