"""The server interceptors on real servers (sync grpc.server and grpc.aio,
the `kind` fixture) with a real channel, limiters on the `impl` fixture's
cores and a manual clock: admission counts, the denial's status, message
and trailing metadata, limits in order, streams, bulkhead release on every
way a call ends, and waits that respect the call's deadline."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from grpc_support import WAIT, Gate, method, serve
from ratefuse import Bulkhead, Rate
from ratefuse.grpc import (
    METHOD,
    RETRY_PUSHBACK,
    AsyncServerInterceptor,
    Limit,
    MethodRule,
    ServerInterceptor,
    metadata,
)
from ratefuse.rates import build_specs
from web_support import ManualClock

TWO_PER_10S = Rate(2, 10.0)  # GCRA: one unit every 5 s, burst 2
TOKEN_A = (("x-api-key", "a"),)
TOKEN_B = (("x-api-key", "b"),)


@pytest.fixture(params=["sync", "aio"])
def kind(request: pytest.FixtureRequest) -> str:
    """`kind` is the server implementation: sync grpc.server or grpc.aio."""
    return str(request.param)


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def keyed(impl: Any, clock: ManualClock, rate: Rate = TWO_PER_10S) -> Any:
    return impl.module("engine._keyed").KeyedLimiterCore(
        build_specs([rate], "gcra"),
        1000,
        clock,
        sleep=clock.sleep,
        async_sleep=clock.async_sleep,
    )


def subject(impl: Any, clock: ManualClock, rate: Rate = TWO_PER_10S) -> Any:
    return impl.module("engine._subject").LimiterCore(
        build_specs([rate], "gcra"), clock
    )


@contextlib.contextmanager
def served(kind: str, rules: list[MethodRule], gate: Gate) -> Iterator[grpc.Channel]:
    """`served` runs a server of ``kind`` with ``rules``; yields a channel."""
    cls = ServerInterceptor if kind == "sync" else AsyncServerInterceptor
    with (
        serve(kind, [cls(rules)], gate) as address,
        grpc.insecure_channel(address) as channel,
    ):
        yield channel


def status_of(call: Any, *args: Any, **kwargs: Any) -> grpc.StatusCode:
    try:
        call(*args, **kwargs)
    except grpc.RpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def test_a_keyed_limit_denies_with_resource_exhausted_and_the_retry_delay(
    kind: str, impl: Any, clock: ManualClock, gate: Gate
) -> None:
    limiter = keyed(impl, clock)
    rule = MethodRule(
        "/test.Echo/*", Limit(limiter, key=metadata("x-api-key"), name="per-token")
    )
    with served(kind, [rule], gate) as channel:
        say = method(channel, "Say")
        assert say(b"hi", metadata=TOKEN_A) == b"hi"
        assert say(b"hi", metadata=TOKEN_A) == b"hi"
        with pytest.raises(grpc.RpcError) as denied:
            say(b"hi", metadata=TOKEN_A)
        assert say(b"hi", metadata=TOKEN_B) == b"hi"  # another key, its own quota
        clock.advance(5.0)
        assert say(b"hi", metadata=TOKEN_A) == b"hi"
    error = denied.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert error.details() == (
        "rate limit 'per-token' exceeded on /test.Echo/Say: retry after 5.000s"
    )
    trailing = dict(error.trailing_metadata())
    assert trailing[RETRY_PUSHBACK] == "5000"
    status = rpc_status.from_call(error)
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    (detail,) = status.details
    retry = error_details_pb2.RetryInfo()
    assert detail.Unpack(retry)
    assert retry.retry_delay.ToNanoseconds() == 5_000_000_000


def test_a_cost_never_admitted_says_do_not_retry(
    kind: str, impl: Any, clock: ManualClock, gate: Gate
) -> None:
    rule = MethodRule("/test.Echo/Say", Limit(subject(impl, clock), cost=3))
    with served(kind, [rule], gate) as channel, pytest.raises(grpc.RpcError) as denied:
        method(channel, "Say")(b"hi")
    assert "the cost can never be admitted" in denied.value.details()
    assert dict(denied.value.trailing_metadata())[RETRY_PUSHBACK] == "-1"
    assert not rpc_status.from_call(denied.value).details


def test_rules_match_full_method_names_with_wildcards_first_match_wins(
    kind: str, impl: Any, clock: ManualClock, gate: Gate
) -> None:
    say_limit = subject(impl, clock, Rate(1, 10.0))
    rules = [
        MethodRule("/test.Echo/Count"),  # exempt
        MethodRule("/test.*/S*", Limit(say_limit)),  # Say and Sum share it
        MethodRule("/other.Service/*", Limit(subject(impl, clock, Rate(1, 10.0)))),
    ]
    with served(kind, rules, gate) as channel:
        assert method(channel, "Say")(b"x") == b"x"
        assert status_of(method(channel, "Say"), b"x") == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        sum_ = method(channel, "Sum", "stream_unary")
        assert status_of(sum_, iter([b"a"])) == grpc.StatusCode.RESOURCE_EXHAUSTED
        for _ in range(3):
            assert list(method(channel, "Count", "unary_stream")(b"2")) == [b"0", b"1"]


def test_several_limits_are_tried_in_order(
    kind: str, impl: Any, clock: ManualClock, gate: Gate
) -> None:
    per_token = keyed(impl, clock, Rate(1, 10.0))
    shared = subject(impl, clock, Rate(3, 10.0))
    rule = MethodRule(
        "/test.Echo/Say",
        [
            Limit(per_token, key=metadata("x-api-key"), name="token"),
            Limit(shared, name="shared"),
        ],
    )
    with served(kind, [rule], gate) as channel:
        say = method(channel, "Say")
        assert say(b"x", metadata=TOKEN_A) == b"x"
        for _ in range(5):  # denied by its own limit: the shared one untouched
            with pytest.raises(grpc.RpcError) as denied:
                say(b"x", metadata=TOKEN_A)
            assert "'token'" in denied.value.details()
        assert say(b"x", metadata=TOKEN_B) == b"x"
        assert say(b"x", metadata=(("x-api-key", "c"),)) == b"x"
        with pytest.raises(grpc.RpcError) as denied:
            say(b"x", metadata=(("x-api-key", "d"),))
        assert "'shared'" in denied.value.details()


def test_the_method_key_gives_each_method_its_own_quota(
    kind: str, impl: Any, clock: ManualClock, gate: Gate
) -> None:
    limiter = keyed(impl, clock, Rate(1, 10.0))
    rule = MethodRule("/test.Echo/*", Limit(limiter, key=METHOD))
    gate.failure = grpc.StatusCode.OK
    with served(kind, [rule], gate) as channel:
        assert method(channel, "Say")(b"x") == b"x"
        assert method(channel, "Fail")(b"x") == b"ok"
        for name in ("Say", "Fail"):
            assert status_of(method(channel, name), b"x") == (
                grpc.StatusCode.RESOURCE_EXHAUSTED
            )


def test_streams_are_admitted_once_or_per_message(
    kind: str, impl: Any, clock: ManualClock, gate: Gate
) -> None:
    once = subject(impl, clock, Rate(1, 10.0))
    each = subject(impl, clock, Rate(3, 10.0))
    rules = [
        MethodRule("/test.Echo/Count", Limit(once)),
        MethodRule("/test.Echo/Sum", Limit(each), per_message=True),
    ]
    with served(kind, rules, gate) as channel:
        count = method(channel, "Count", "unary_stream")
        assert list(count(b"5")) == [b"%d" % index for index in range(5)]
        with pytest.raises(grpc.RpcError) as denied:
            list(count(b"5"))
        assert denied.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        total = method(channel, "Sum", "stream_unary")
        assert total(iter([b"a", b"b"])) == b"2"
        # The third message is the limit's third unit, the fourth is denied.
        with pytest.raises(grpc.RpcError) as denied:
            total(iter([b"a", b"b"]))
        assert denied.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert dict(denied.value.trailing_metadata())[RETRY_PUSHBACK] == "3334"


def exchange(chat: Any, messages: list[bytes]) -> tuple[list[bytes], Any]:
    """`exchange` sends ``messages`` on a bidirectional call; returns the
    answers received and the final status."""
    answers: list[bytes] = []
    try:
        answers.extend(chat(iter(messages)))
    except grpc.RpcError as error:
        return answers, error.code()
    return answers, grpc.StatusCode.OK


@pytest.mark.parametrize("per_message", [False, True])
def test_a_bidirectional_stream_is_admitted_once_or_per_message(
    kind: str, impl: Any, clock: ManualClock, gate: Gate, per_message: bool
) -> None:
    limiter = subject(impl, clock)  # 2 units
    rule = MethodRule("/test.Echo/Chat", Limit(limiter), per_message=per_message)
    with served(kind, [rule], gate) as channel:
        chat = method(channel, "Chat", "stream_stream")
        ok, exhausted = grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED
        assert exchange(chat, [b"a", b"b"]) == ([b"A", b"B"], ok)
        if per_message:  # both units taken by the first call's messages
            assert exchange(chat, [b"c"]) == ([], exhausted)
        else:  # one unit per call
            assert exchange(chat, [b"c", b"d"]) == ([b"C", b"D"], ok)
            assert exchange(chat, [b"e"]) == ([], exhausted)


class WatchedBulkhead(Bulkhead):
    """`WatchedBulkhead` sets ``freed`` on every release."""

    def __init__(self, max_concurrent: int) -> None:
        super().__init__(max_concurrent, name="watched")
        self.freed = threading.Event()

    def release(self) -> None:
        super().release()
        self.freed.set()


def test_a_full_bulkhead_refuses_and_completion_frees_it(kind: str, gate: Gate) -> None:
    bulkhead = WatchedBulkhead(1)
    rule = MethodRule("/test.Echo/Hold", bulkhead=bulkhead)
    with served(kind, [rule], gate) as channel:
        hold = method(channel, "Hold")
        first = hold.future(b"x")
        assert gate.entered.wait(WAIT)
        with pytest.raises(grpc.RpcError) as refused:
            hold(b"x")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "bulkhead 'watched' is full" in refused.value.details()
        assert RETRY_PUSHBACK not in dict(refused.value.trailing_metadata())
        gate.released.set()
        assert first.result(WAIT) == b"done"
        assert bulkhead.freed.wait(WAIT)
        assert bulkhead.in_use == 0
        assert hold(b"x") == b"done"
    assert bulkhead.in_use == 0


@pytest.mark.parametrize("end", ["cancel", "deadline"])
def test_the_bulkhead_is_freed_when_a_call_is_cancelled_or_times_out(
    kind: str, gate: Gate, end: str
) -> None:
    bulkhead = WatchedBulkhead(1)
    rule = MethodRule("/test.Echo/*", bulkhead=bulkhead)
    with served(kind, [rule], gate) as channel:
        hold = method(channel, "Hold")
        call = hold.future(b"x", timeout=0.5 if end == "deadline" else WAIT)
        assert gate.entered.wait(WAIT)
        assert bulkhead.in_use == 1
        if end == "cancel":
            call.cancel()
        assert bulkhead.freed.wait(WAIT)
        assert bulkhead.in_use == 0
        if end == "cancel":
            assert call.cancelled()
        else:
            assert status_of(call.result, WAIT) == grpc.StatusCode.DEADLINE_EXCEEDED


@pytest.mark.parametrize("end", ["complete", "cancel"])
def test_a_response_stream_holds_its_slot_until_it_ends(
    kind: str, gate: Gate, end: str
) -> None:
    bulkhead = WatchedBulkhead(1)
    rule = MethodRule("/test.Echo/HoldStream", bulkhead=bulkhead)
    with served(kind, [rule], gate) as channel:
        stream = method(channel, "HoldStream", "unary_stream")
        responses = stream(b"x", timeout=WAIT)
        assert next(responses) == b"first"
        assert bulkhead.in_use == 1
        assert status_of(lambda: list(stream(b"x"))) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        if end == "cancel":
            responses.cancel()
        else:
            gate.released.set()
            assert list(responses) == []
        assert bulkhead.freed.wait(WAIT)
        assert bulkhead.in_use == 0


def test_an_int_bulkhead_is_one_per_method(kind: str, gate: Gate) -> None:
    rule = MethodRule("/test.Echo/*", bulkhead=1)
    with served(kind, [rule], gate) as channel:
        call = method(channel, "Hold").future(b"x", timeout=WAIT)
        assert gate.entered.wait(WAIT)
        assert method(channel, "Say")(b"free") == b"free"
        assert status_of(method(channel, "Hold"), b"x") == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        gate.released.set()
        assert call.result(WAIT) == b"done"


def test_a_wait_that_cannot_fit_the_deadline_is_refused_at_once(
    kind: str, impl: Any, clock: ManualClock, gate: Gate
) -> None:
    limiter = keyed(impl, clock, Rate(1, 10.0))
    rule = MethodRule("/test.Echo/Say", Limit(limiter), max_wait=60.0)
    with served(kind, [rule], gate) as channel:
        say = method(channel, "Say")
        start = clock.now_ns
        assert say(b"x", timeout=WAIT) == b"x"
        # 10 s to wait, 1 s left: refused at once, the clock never slept.
        with pytest.raises(grpc.RpcError) as refused:
            say(b"x", timeout=1.0)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert clock.now_ns == start
        # Within the deadline and max_wait: the call waits (the limiter's
        # sleep moves the manual clock) and is admitted.
        assert say(b"x", timeout=30.0) == b"x"
        assert clock.now_ns - start == 10_000_000_000


def test_max_wait_bounds_a_wait_the_deadline_allows(
    kind: str, impl: Any, clock: ManualClock, gate: Gate
) -> None:
    limiter = keyed(impl, clock, Rate(1, 10.0))
    rule = MethodRule("/test.Echo/Say", Limit(limiter), max_wait=5.0)
    with served(kind, [rule], gate) as channel:
        say = method(channel, "Say")
        assert say(b"x") == b"x"
        assert status_of(say, b"x", timeout=WAIT * 3) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED
        )
        clock.advance(6.0)
        assert say(b"x") == b"x"  # 4 s left to wait: within max_wait
        assert clock.now_ns - ManualClock().now_ns == 10_000_000_000


def test_rules_are_checked_at_construction() -> None:
    from ratefuse.web import header

    with pytest.raises(ValueError, match="full method name"):
        MethodRule("Say")
    with pytest.raises(ValueError, match="reads HTTP requests"):
        MethodRule("/a.B/C", Limit(keyed_limiter(), key=header("x")))
    with pytest.raises(ValueError, match="bulkhead must be >= 1, got 0"):
        MethodRule("/a.B/C", bulkhead=0)
    with pytest.raises(ValueError, match="max_wait must be seconds >= 0, got -1"):
        MethodRule("/a.B/C", max_wait=-1)
    with pytest.raises(ValueError, match="unique within a rule"):
        MethodRule("/a.B/C", [Limit(keyed_limiter()), Limit(keyed_limiter())])
    with pytest.raises(ValueError, match="give rules, or a registry"):
        ServerInterceptor()


def keyed_limiter() -> Any:
    from ratefuse import KeyedLimiter

    return KeyedLimiter("1/s")
