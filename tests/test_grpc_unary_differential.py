"""The compiled common unary call of GuardedAioChannel (``grpc._unary``)
and its reference make the same decisions: random traces of calls (answered,
failed with a status, cancelled while awaited, dropped unawaited, failing to
start) on a breaker of the same core and a manual clock give identical
answers, breaker states and metrics; a breaker reconfigured to time calls
hands them to the general path in both."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Generator
from typing import Any

import grpc
from hypothesis import given, settings
from hypothesis import strategies as st

from breaker_support import ManualClock, make_breaker
from ratefuse.breaker import BreakerConfig, State
from ratefuse.grpc.guard import DEFAULT_FAILURE_CODES, Guard

CONFIG = BreakerConfig(
    window_size=4, minimum_calls=2, wait_duration=10.0, half_open_calls=1
)
TIMED = BreakerConfig(
    window_size=4,
    minimum_calls=2,
    wait_duration=10.0,
    half_open_calls=1,
    slow_call_duration=1.0,
)
CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.INTERNAL,
)
STEP = st.one_of(
    st.just(("ok",)),
    st.tuples(st.just("status"), st.sampled_from(CODES)),
    st.just(("cancel",)),
    st.just(("drop",)),
    st.just(("broken",)),  # the real multicallable raises
    st.just(("advance",)),
    st.just(("timed",)),
    st.just(("untimed",)),
)


class Broken(Exception):
    """`Broken` is what a real multicallable raises for a call that cannot
    start."""


class FakeCall:
    """`FakeCall` is a grpc.aio call with one response: it waits once, then
    answers ``b"r"`` or fails with ``code``."""

    def __init__(self, code: grpc.StatusCode | None) -> None:
        self.code = code

    def __await__(self) -> Generator[Any, None, bytes]:
        yield None
        if self.code is None:
            return b"r"
        raise grpc.aio.AioRpcError(
            self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="d"
        )


class FakeMultiCallable:
    """`FakeMultiCallable` starts the call ``next`` says."""

    def __init__(self) -> None:
        self.next: Any = None

    def __call__(self, request: bytes, **options: Any) -> FakeCall:
        if self.next is Broken:
            raise Broken
        return FakeCall(self.next)


def answer(call: Any, cancel: bool) -> str:
    # Awaits ``call`` by hand: one wait, then the answer or (cancel) the
    # cancellation of the awaiting task.
    waiting = call.__await__()
    try:
        waiting.send(None)
        if cancel:
            waiting.throw(asyncio.CancelledError())
        waiting.send(None)
    except StopIteration as done:
        return f"answer {done.value!r}"
    except grpc.RpcError as error:
        return f"{type(error).__name__} {error.code().name}"
    except asyncio.CancelledError:
        return "cancelled"
    return "still waiting"


def run(impl: Any, trace: list[tuple[Any, ...]]) -> list[Any]:
    clock = ManualClock()
    breaker = make_breaker(impl, CONFIG, clock=clock)
    guard = Guard(breaker, None, None, DEFAULT_FAILURE_CODES, math.inf, False)
    general: list[bytes] = []
    real = FakeMultiCallable()
    say = impl.module("grpc._unary").unary_multicallable(
        lambda request: general.append(request) or "general", real, guard
    )
    seen: list[Any] = []
    for name, *args in trace:
        outcome: Any = None
        if name == "advance":
            clock.advance(10.0)
        elif name in ("timed", "untimed"):
            breaker.reconfigure(TIMED if name == "timed" else CONFIG)
        elif name == "broken":
            real.next = Broken
            try:
                say(b"x")
            except Broken:
                outcome = "broken"
        else:
            real.next = args[0] if name == "status" else None
            call = say(b"x")
            if call == "general":
                outcome = "general"
            elif name == "drop":
                del call
            else:
                outcome = answer(call, cancel=name == "cancel")
        seen.append((outcome, breaker.metrics()))
    return [*seen, len(general)]


@settings(max_examples=200, deadline=None)
@given(st.lists(STEP, max_size=40))
def test_compiled_and_reference_unary_calls_agree(
    compiled: Any, reference: Any, trace: list[tuple[Any, ...]]
) -> None:
    assert run(compiled, trace) == run(reference, trace)


def test_the_trace_reader_sees_each_outcome(compiled: Any, reference: Any) -> None:
    # The runner tells the outcomes apart (a differential test of a runner
    # that saw nothing would pass on anything).
    unavailable = ("status", grpc.StatusCode.UNAVAILABLE)
    trace = [
        *[("ok",), ("ok",), ("cancel",), ("broken",), unavailable, unavailable],
        *[("ok",), ("advance",), ("drop",), ("ok",), ("timed",), ("ok",)],
    ]
    for impl in (compiled, reference):
        steps = run(impl, trace)
        assert [outcome for outcome, _ in steps[:-1]] == [
            *["answer b'r'", "answer b'r'", "cancelled", "broken"],
            *["AioRpcError UNAVAILABLE", "AioRpcError UNAVAILABLE"],
            *["CircuitOpenRpcError UNAVAILABLE", None, None, "answer b'r'"],
            *[None, "general"],
        ]
        # The dropped probe left no outcome; the next one closed the breaker.
        assert steps[8][1].state == State.HALF_OPEN
        assert steps[9][1].state == State.CLOSED
        assert steps[-1] == 1
