"""A batch's reply writes a long run of equal verdicts as one group (issue
15): (-n, 0, 0, 0, 0) repeats the previous verdict n more times. Decoded
here from hand-made replies, and read from a real redis-server's."""

from __future__ import annotations

import msgpack
import pytest

import ratefuse.redis._exchange as exchange_module
from ratefuse.redis import RedisBackend, RedisLimiter
from ratefuse.redis._codec import decode_batch, to_decisions

VERDICT = (1, 4, 0, 1_200_000, 0)
OTHER = (0, 0, 700, 1_200_000, 1)


def test_a_run_repeats_the_verdict_before_it() -> None:
    reply = msgpack.packb([*VERDICT, -9, 0, 0, 0, 0, *OTHER, *VERDICT])
    decoded = decode_batch(reply, 12)
    assert decoded == [VERDICT] * 10 + [OTHER, VERDICT]
    decisions = to_decisions(decoded, (5, 9))
    assert [d.limit for d in decisions] == [5] * 10 + [9, 5]
    assert [d.allowed for d in decisions] == [True] * 10 + [False, True]


def test_the_decisions_of_a_run_are_one_object() -> None:
    decoded = decode_batch(msgpack.packb([*OTHER, *VERDICT, -9, 0, 0, 0, 0]), 11)
    decisions = to_decisions(decoded, (5, 9))
    assert decisions == to_decisions([OTHER] + [VERDICT] * 10, (5, 9))
    # A call that ends in a run: its repeats share one Decision.
    assert len({id(decision) for decision in decisions[1:]}) == 1


@pytest.mark.parametrize(
    ("flat", "count", "error"),
    [
        ([-3, 0, 0, 0, 0, *VERDICT], 4, "out of place"),  # nothing to repeat
        ([*VERDICT, -3, 1, 0, 0, 0], 4, "out of place"),  # not a run group
        ([*VERDICT, -3, 0, 0, 0, 0], 5, "4 verdicts for 5 keys"),
        ([*VERDICT, -3, 0, 0, 0, 0, 1, -2, 0, 0, 0], 5, "remaining=-2"),
        ([*VERDICT, -3, 0, 0, 0], 4, "integers for 4 keys"),
        ([*VERDICT, *VERDICT], 3, "integers for 3 keys"),
    ],
)
def test_a_malformed_run_is_refused(flat: list[int], count: int, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        decode_batch(msgpack.packb(flat), count)


@pytest.fixture
def replies(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """`replies` records every batch reply the exchange decodes, unpacked."""
    seen: list[list[int]] = []

    def recording(reply: object, count: int) -> object:
        assert isinstance(reply, bytes)
        seen.append(msgpack.unpackb(reply))
        return decode_batch(reply, count)

    monkeypatch.setattr(exchange_module, "decode_batch", recording)
    return seen


def test_fresh_keys_of_one_cost_come_back_as_one_run(
    client, fresh_name, replies: list[list[int]]
) -> None:
    backend = RedisBackend(client, timeout=5.0, chunk=250)
    try:
        limiter = RedisLimiter("5/h", backend=backend, name=fresh_name())
        decisions = limiter.decide_many_decisions([f"k{index}" for index in range(250)])
        assert [(d.allowed, d.remaining) for d in decisions] == [(True, 4)] * 250
        ((reply,),) = [replies]
        assert reply[5:] == [-249, 0, 0, 0, 0]
    finally:
        backend.close()


def test_short_runs_are_written_out_and_long_ones_grouped(
    client, fresh_name, replies: list[list[int]]
) -> None:
    backend = RedisBackend(client, timeout=5.0, chunk=250)
    try:
        limiter = RedisLimiter("5/h", backend=backend, name=fresh_name())
        # Runs of 3, then 1, then 20 equal verdicts: costs 1, 2, 1.
        costs = [1] * 3 + [2] + [1] * 20
        keys = [f"k{index}" for index in range(len(costs))]
        decisions = limiter.decide_many_decisions(keys, costs)
        assert [d.remaining for d in decisions] == [4] * 3 + [3] + [4] * 20
        (reply,) = replies
        # 3 written out, 1, then 1 and a group of 19 repeats.
        assert len(reply) == 5 * (3 + 1 + 1 + 1)
        assert reply[-5:] == [-19, 0, 0, 0, 0]
        # Denials repeat too, and the decisions of a repeated key follow it.
        again = limiter.decide_many_decisions([keys[0]] * 12)
        assert [d.remaining for d in again] == [3, 2, 1, 0] + [0] * 8
        assert [d.allowed for d in again] == [True] * 4 + [False] * 8
    finally:
        backend.close()
