"""Benchmark scenarios, shared by ``benchmarks/`` (pytest-benchmark) and the
``ratefuse`` command line, so both measure exactly the same thing.

A scenario builds a ``loop(n)`` callable that performs its operation ``n``
times with as little loop overhead as Python allows (``itertools.repeat``).
Time per call is therefore an upper bound that includes about 3 ns of loop.
A batch scenario (``per_call`` decisions in each operation, a
``decide_many`` of 1,000 keys) is reported per decision.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import repeat

from ratefuse.core import implementation as _impl
from ratefuse.rates import Rate, build_specs

Loop = Callable[[int], None]

# pytest-benchmark rounds are this many calls, so microseconds per round
# read as nanoseconds per call.
CALLS_PER_ROUND = 1_000

LIMITER_ALGORITHMS = (
    "gcra",
    "leaky_bucket",
    "fixed_window",
    "sliding_window",
    "sliding_log",
)
# Rates that keep every algorithm on its admitting path (the one that writes
# state) at any speed this machine reaches; sliding_log's limit is capped, so
# it reaches its denying path after its first 100,000 calls.
_FAST_RATE = Rate(1_000_000_000, 1.0)
_LOG_RATE = Rate(100_000, 1.0)


@dataclass(frozen=True)
class Scenario:
    """`Scenario` names one measured operation; ``build`` makes its loop.
    ``per_call`` is how many decisions one operation makes (1; a batch's
    size): times are reported per decision. ``versus`` is the (group, name)
    of the ratefuse scenario a peer's is compared with, when it is timed in
    a group of its own (None: its own group and name)."""

    group: str
    name: str
    implementation: str
    build: Callable[[], Loop]
    per_call: int = 1
    versus: tuple[str, str] | None = None

    @property
    def compared_as(self) -> tuple[str, str]:
        """`compared_as` is the (group, name) the report compares it under."""
        return (self.group, self.name) if self.versus is None else self.versus

    @property
    def label(self) -> str:
        """`label` is "group/name[implementation]"."""
        return f"{self.group}/{self.name}[{self.implementation}]"


def available_implementations() -> list[_impl.Implementation]:
    """`available_implementations` is ["cython", "python"] when built."""
    return ["cython", "python"] if _impl.IMPLEMENTATION == "cython" else ["python"]


def _limiter(implementation: _impl.Implementation, algorithm: str) -> object:
    rate = _LOG_RATE if algorithm == "sliding_log" else _FAST_RATE
    core_class = _impl.load("engine._subject", implementation).LimiterCore
    # The public Limiter is a thin subclass of the core; build the same shape
    # for either implementation so both are measured through one API.
    limiter_class = type("Limiter", (core_class,), {})
    return limiter_class(build_specs([rate], algorithm))


def empty_loop(n: int) -> None:
    """`empty_loop` is the loop alone, n times: the floor of every loop."""
    for _ in repeat(None, n):
        pass


def calls(function: Callable[[], object], n: int) -> None:
    """`calls` calls ``function`` n times; every scenario's loop (ours and
    the peers', via ``partial(calls, ...)``) is this one."""
    for _ in repeat(None, n):
        function()


def rejections(
    function: Callable[[], object], error: type[BaseException], n: int
) -> None:
    """`rejections` calls ``function`` n times, each raising ``error``
    (a breaker's rejection, ours or a peer's), caught."""
    for _ in repeat(None, n):
        try:  # noqa: SIM105 - contextlib.suppress would cost more than the call
            function()
        except error:
            pass


def noop() -> None:
    """`noop` is the guarded function of the breaker scenarios: nothing."""


def limiter_scenarios(
    implementations: Iterable[_impl.Implementation] | None = None,
) -> list[Scenario]:
    """`limiter_scenarios` is try_acquire, decide and acquire (with
    capacity available) per algorithm and implementation, plus the floors
    they are compared with."""
    chosen = list(implementations or available_implementations())
    scenarios = [
        Scenario("floor", "empty loop", "-", lambda: empty_loop),
        Scenario(
            "floor",
            "time.monotonic_ns()",
            "-",
            lambda: partial(calls, time.monotonic_ns),
        ),
    ]
    for algorithm in LIMITER_ALGORITHMS:
        for implementation in chosen:
            for verb in ("try_acquire", "decide", "acquire"):
                build = partial(_limiter_loop, implementation, algorithm, verb)
                scenarios.append(Scenario(verb, algorithm, implementation, build))
    return scenarios


def _limiter_loop(
    implementation: _impl.Implementation, algorithm: str, verb: str
) -> Loop:
    method: Callable[[], object] = getattr(_limiter(implementation, algorithm), verb)
    return partial(calls, method)


@dataclass(frozen=True)
class Measurement:
    """`Measurement` is ns per call over repeats: median, min and max."""

    scenario: Scenario
    median_ns: float
    min_ns: float
    max_ns: float

    @property
    def per_second(self) -> float:
        """`per_second` is calls per second at the median."""
        return 1e9 / self.median_ns


def calibrate(loop: Loop, sample_seconds: float, first: int = 100) -> int:
    """`calibrate` is how many calls of ``loop`` take about
    ``sample_seconds``, trying ``first`` calls first (at least 1)."""
    calls = first = max(1, first)
    while True:
        start = time.perf_counter_ns()
        loop(calls)
        elapsed = (time.perf_counter_ns() - start) / 1e9
        if elapsed >= sample_seconds / 4 or calls >= 1 << 26:
            return max(first, round(calls * sample_seconds / max(elapsed, 1e-9)))
        calls *= 4


def measure(
    scenarios: Sequence[Scenario],
    *,
    repeats: int = 7,
    calls: int | None = None,
    sample_seconds: float = 0.02,
    progress: Callable[[int, int], None] | None = None,
) -> list[Measurement]:
    """`measure` times every scenario ``repeats`` times, interleaved.

    Each repeat runs every scenario once in turn, after a warm-up that also
    calibrates the number of calls (about ``sample_seconds`` per sample,
    unless ``calls`` fixes it), so drift of the machine over the run affects
    all scenarios alike. Reports the median and the spread (min, max) in ns
    per decision (a call's time over its ``per_call``); the loop's own cost
    (about 3 ns) is included. ``calls`` counts decisions and is rounded up
    to whole calls of a batch scenario.
    """
    loops = [scenario.build() for scenario in scenarios]
    counts = [
        -(-calls // scenario.per_call)
        if calls
        else calibrate(loop, sample_seconds, 100 // scenario.per_call)
        for scenario, loop in zip(scenarios, loops, strict=True)
    ]
    samples: list[list[float]] = [[] for _ in scenarios]
    # As timeit does: no garbage collection inside a sample. Scenarios that
    # hold millions of objects (a peer's 100k keys) would otherwise charge
    # their collections to whichever contender allocates next.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for round_index in range(repeats):
            for index, loop in enumerate(loops):
                start = time.perf_counter_ns()
                loop(counts[index])
                elapsed = time.perf_counter_ns() - start
                decisions = counts[index] * scenarios[index].per_call
                samples[index].append(elapsed / decisions)
                gc.collect(0)
            if progress is not None:
                progress(round_index + 1, repeats)
    finally:
        if collecting:
            gc.enable()
    return [
        Measurement(scenario, statistics.median(times), min(times), max(times))
        for scenario, times in zip(scenarios, samples, strict=True)
    ]
