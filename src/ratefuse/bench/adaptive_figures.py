"""The adaptive simulation's figures and targets: goodput, p50/p99 latency
of admitted work, time to re-converge after the capacity drop, and the
issue's criteria (issue 19) checked on them.

Before the drop the figures cover ``[warmup, drop_at)`` (the steady state
at the full capacity). After it, the run is cut into windows of
``run.window`` seconds; a window is good when the calls finishing in it
are served at >= 90% of the new capacity with a p99 within 2x of the
unloaded p99, and the policy has re-converged at the start of the first
window from which every window is good.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ratefuse.bench.adaptive_sim import NoLimit, Outcome, Run, ServerModel, simulate

# The targets of issue 19, at twice the capacity.
GOODPUT_TARGET: Final = 0.9
P99_TARGET: Final = 2.0
RECONVERGE_TARGET_S: Final = 5.0
# The load whose p99 is the "unloaded" one: half the capacity, no limit.
UNLOADED_LOAD: Final = 0.5


def percentile(values: list[float], share: float) -> float:
    """`percentile` is the nearest-rank ``share`` (0 < share <= 1)
    percentile of ``values`` (nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Figures:
    """`Figures` are one policy's results: before the drop, ``goodput`` (good
    calls as a share of what could be served: the offered rate, at most the
    capacity's throughput), ``p50``/``p99`` (seconds, admitted calls) and
    ``refused`` (share of arrivals refused); after it, ``reconverge``
    (seconds from the drop; inf: never) and ``goodput_after`` (share of what
    the halved capacity could serve, over the windows after re-converging,
    or all of them if it never did)."""

    policy: str
    goodput: float
    p50: float
    p99: float
    refused: float
    reconverge: float
    goodput_after: float

    def failures(self, unloaded_p99: float) -> list[str]:
        """`failures` names the targets these figures miss (empty: none)."""
        missed = []
        if not self.goodput >= GOODPUT_TARGET:
            missed.append(f"goodput {self.goodput:.0%} < {GOODPUT_TARGET:.0%}")
        if math.isnan(self.p99):
            missed.append("no admitted call finished before the drop")
        elif not self.p99 <= P99_TARGET * unloaded_p99:
            missed.append(
                f"p99 {self.p99 * 1e3:.1f} ms > {P99_TARGET:g}x unloaded "
                f"{unloaded_p99 * 1e3:.1f} ms"
            )
        if not self.reconverge <= RECONVERGE_TARGET_S:
            missed.append(f"no re-convergence within {RECONVERGE_TARGET_S:g} s")
        return missed


def servable(model: ServerModel, load: float) -> float:
    """`servable` is the calls per second ``model`` can serve at ``load``
    times its capacity: the offered rate, at most its throughput."""
    return min(load, 1.0) * model.throughput


def unloaded_p99(model: ServerModel, run: Run) -> float:
    """`unloaded_p99` is the p99 latency (seconds) with no limit at half the
    capacity, before the drop."""
    quiet = Run(
        load=UNLOADED_LOAD,
        duration=run.drop_at,
        drop_at=run.drop_at - run.window,
        warmup=run.warmup,
        deadline=run.deadline,
        window=run.window,
        seed=run.seed,
    )
    outcome = simulate(model, quiet, NoLimit())
    return percentile(
        [
            latency
            for start, latency in zip(outcome.starts, outcome.latencies, strict=True)
            if run.warmup <= start + latency < quiet.drop_at
        ],
        0.99,
    )


def figures(model: ServerModel, run: Run, outcome: Outcome, unloaded: float) -> Figures:
    """`figures` reduces ``outcome`` to its Figures (``unloaded``: the
    unloaded p99, seconds)."""
    steady_good = 0
    steady: list[float] = []
    windows = max(1, math.ceil((run.duration - run.drop_at) / run.window))
    window_latencies: list[list[float]] = [[] for _ in range(windows)]
    window_good = [0] * windows
    for start, latency in zip(outcome.starts, outcome.latencies, strict=True):
        end = start + latency
        good = latency <= run.deadline
        if run.warmup <= end < run.drop_at:
            steady.append(latency)
            steady_good += good
        elif end >= run.drop_at:
            index = min(windows - 1, int((end - run.drop_at) / run.window))
            window_latencies[index].append(latency)
            window_good[index] += good
    steady_s = run.drop_at - run.warmup
    arrivals = len(outcome.latencies) + len(outcome.refused)
    half = ServerModel(
        max(1, model.capacity // 2), model.latency, model.jitter, model.contention
    )
    servable_after = servable(half, run.load * model.throughput / half.throughput)
    served_ok = [
        window_good[index] / run.window >= GOODPUT_TARGET * servable_after
        and percentile(window_latencies[index], 0.99) <= P99_TARGET * unloaded
        for index in range(windows)
    ]
    first_good = windows
    while first_good > 0 and served_ok[first_good - 1]:
        first_good -= 1
    reconverge = math.inf if first_good == windows else first_good * run.window
    counted = range(0 if first_good == windows else first_good, windows)
    goodput_after = sum(window_good[index] for index in counted) / (
        len(counted) * run.window * servable_after
    )
    return Figures(
        policy=outcome.policy,
        goodput=steady_good / steady_s / servable(model, run.load),
        p50=percentile(steady, 0.5),
        p99=percentile(steady, 0.99),
        refused=len(outcome.refused) / arrivals if arrivals else 0.0,
        reconverge=reconverge,
        goodput_after=goodput_after,
    )


def best_of(rows: Sequence[Figures], unloaded: float) -> Figures:
    """`best_of` is the row missing the fewest targets (then: the highest
    goodput) of ``rows`` (not empty)."""
    return min(rows, key=lambda row: (len(row.failures(unloaded)), -row.goodput))
