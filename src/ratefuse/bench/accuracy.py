"""`ratefuse bench accuracy`: does a limiter hold its limit under load?

N workers (threads, or processes for a shared backend) call ``try_acquire``
on one quota as fast as they can for a fixed duration. The report compares
the units admitted with the algorithm's bound over the measured interval
(``burst + elapsed / T`` for the meters, ``limit`` per started window for the
windows), gives the utilisation (admitted / bound: a limiter that admits
nothing is wrong too), and the worst count seen in any sliding window of one
period. The verdict judges the admission count both ways: above the bound
is OVER_THE_BOUND; below half of what a correct limiter admits when asked
without pause (`least`) is ADMITS_TOO_LITTLE (a limiter that admits
nothing, or a target whose limiter was dropped, is wrong too).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Any

# The quota every target is asked to hold: 1,000 per second, burst 1,000
# (whole seconds, since some peers take no finer period).
LIMIT = 1_000
PERIOD_S = 1.0

# A target admitting less than this share of `least` admits too little. The
# slack is for gaps in demand (scheduling, round trips), not for a limiter
# that works: those admit about all of `least`.
MIN_SHARE = 0.5

TryAcquire = Callable[[], bool]


class Verdict(IntEnum):
    """`Verdict` is how a target's admissions compare with its bounds."""

    HOLDS = 0
    OVER_THE_BOUND = 1
    ADMITS_TOO_LITTLE = 2

    @property
    def text(self) -> str:
        """`text` is the verdict as the table prints it."""
        return "holds" if self is Verdict.HOLDS else self.name.replace("_", " ")


@dataclass(frozen=True)
class Target:
    """`Target` is one limiter to judge: ``make()`` returns its try_acquire
    (thread-safe, one shared quota). ``kind`` names its bound: "meter"
    (burst + elapsed / T), "window" (limit per aligned window) or "rolling"
    (limit per any period); ``ours``: exceeding it fails the run."""

    name: str
    make: Callable[[], TryAcquire]
    kind: str
    ours: bool
    # False when the limiter's windows are aligned on another clock (Redis
    # decides on the server's wall clock): the window bound then counts
    # every window an interval of that length can overlap.
    local_clock: bool = True
    # The clock the limiter decides on, in ns, when it is not this
    # process's (Redis: the server's TIME). The run's interval is read on it
    # for the bounds: a server clock that steps or slews while the run goes
    # on would otherwise show as a unit over a bound read locally.
    deciding_clock: Callable[[], int] | None = None


@dataclass(frozen=True)
class AccuracyResult:
    """`AccuracyResult` is one target's run (see the module doc)."""

    target: str
    workers: int
    attempts: int
    admitted: int
    bound: int
    elapsed_s: float
    utilisation: float
    worst_window: int
    limit: int
    period_s: float
    ours: bool
    least: int

    @property
    def exceeded(self) -> bool:
        """`exceeded` is whether more units were admitted than the bound."""
        return self.admitted > self.bound

    @property
    def verdict(self) -> Verdict:
        """`verdict` judges the admissions against ``bound`` and ``least``."""
        if self.exceeded:
            return Verdict.OVER_THE_BOUND
        if self.admitted < MIN_SHARE * self.least:
            return Verdict.ADMITS_TOO_LITTLE
        return Verdict.HOLDS

    def as_dict(self) -> dict[str, Any]:
        """`as_dict` is the JSON form, with ``exceeded`` and ``verdict``."""
        return {
            **asdict(self),
            "exceeded": self.exceeded,
            "verdict": self.verdict.name.lower(),
        }


KINDS = {
    "gcra": "meter",
    "leaky_bucket": "meter",
    "fixed_window": "window",
    "sliding_window": "window",
    "sliding_log": "rolling",
}


def bound(kind: str, start_ns: int, end_ns: int, local_clock: bool = True) -> int:
    """`bound` is the most units a limiter of ``kind`` may admit in
    [start, end] (``local_clock``: its windows are aligned on this clock)."""
    elapsed = end_ns - start_ns
    period_ns = round(PERIOD_S * 1e9)
    if kind == "window" and not local_clock:
        return LIMIT * (elapsed // period_ns + 2)
    if kind == "meter":
        interval_ns = -(-period_ns // LIMIT)
        return LIMIT + elapsed // interval_ns
    if kind == "rolling":
        return LIMIT * -(-elapsed // period_ns)
    # Every aligned window that overlaps the interval, counted whole.
    return LIMIT * (end_ns // period_ns - start_ns // period_ns + 1)


def least(kind: str, start_ns: int, end_ns: int) -> int:
    """`least` is the fewest units a correct limiter of ``kind`` on a fresh
    quota admits in [start, end] when asked without pause: its whole first
    burst, then a meter one unit per emission interval and the window
    counters ``limit`` per whole period."""
    elapsed = end_ns - start_ns
    period_ns = round(PERIOD_S * 1e9)
    if kind == "meter":
        return LIMIT + elapsed // -(-period_ns // LIMIT)
    return LIMIT * max(1, elapsed // period_ns)


def worst_window(stamps: Sequence[int]) -> int:
    """`worst_window` is the most admissions in any window of one period."""
    period_ns = round(PERIOD_S * 1e9)
    worst, first = 0, 0
    for last, stamp in enumerate(stamps):
        while stamps[first] <= stamp - period_ns:
            first += 1
        worst = max(worst, last - first + 1)
    return worst


def run_threads(target: Target, workers: int, duration_s: float) -> AccuracyResult:
    """`run_threads` hammers ``target`` from ``workers`` threads."""
    try_acquire = target.make()
    stamps: list[list[int]] = [[] for _ in range(workers)]
    attempts = [0] * workers
    barrier = threading.Barrier(workers + 1)
    deadline = [0]

    def work(index: int) -> None:
        mine, clock, tries = stamps[index], time.monotonic_ns, 0
        barrier.wait()
        end = deadline[0]
        while True:
            now = clock()
            if now >= end:
                break
            tries += 1
            if try_acquire():
                mine.append(clock())
        attempts[index] = tries

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    deciding = (
        time.monotonic_ns if target.deciding_clock is None else target.deciding_clock
    )
    decided_from = deciding()  # before any decision: the threads wait below
    start = time.monotonic_ns()
    deadline[0] = start + round(duration_s * 1e9)
    barrier.wait()
    for thread in threads:
        thread.join()
    end = time.monotonic_ns()
    decided_to = deciding()  # after every decision
    merged = sorted(stamp for mine in stamps for stamp in mine)
    limit = bound(target.kind, decided_from, decided_to, target.local_clock)
    return AccuracyResult(
        target=target.name,
        workers=workers,
        attempts=sum(attempts),
        admitted=len(merged),
        bound=limit,
        elapsed_s=(end - start) / 1e9,
        utilisation=len(merged) / limit,
        worst_window=worst_window(merged),
        limit=LIMIT,
        period_s=PERIOD_S,
        ours=target.ours,
        least=least(target.kind, start, end),
    )


def local_targets() -> list[Target]:
    """`local_targets` is ratefuse's in-process limiters, one per algorithm."""
    from ratefuse.limiter import Limiter
    from ratefuse.rates import Rate

    targets = []
    for algorithm in (
        "gcra",
        "leaky_bucket",
        "fixed_window",
        "sliding_window",
        "sliding_log",
    ):

        def make(algorithm: str = algorithm) -> TryAcquire:
            limiter = Limiter(Rate(LIMIT, PERIOD_S), algorithm=algorithm)
            return limiter.try_acquire

        targets.append(
            Target(f"ratefuse {algorithm}", make, KINDS[algorithm], ours=True)
        )
    return targets


def shm_targets() -> list[Target]:
    """`shm_targets` is ratefuse's shared-memory limiters on a fresh table
    each (removed when the run ends), for the algorithms it supports."""
    import atexit
    import uuid

    from ratefuse.shm import ShmBackend, ShmLimiter

    targets = []
    for algorithm in ("gcra", "fixed_window", "sliding_window"):

        def make(algorithm: str = algorithm) -> TryAcquire:
            backend = ShmBackend(f"ratefuse-accuracy-{uuid.uuid4().hex}", max_keys=16)
            atexit.register(backend.unlink)
            limiter = ShmLimiter(f"{LIMIT}/s", algorithm, backend=backend)
            return limiter.try_acquire

        targets.append(
            Target(f"ratefuse {algorithm} (shm)", make, KINDS[algorithm], True)
        )
    return targets


def peer_targets() -> tuple[list[Target], list[str]]:
    """`peer_targets` is every installed peer limiter on the same quota."""
    from ratefuse.bench.peers import LIMITER_PEERS

    targets, missing = [], []
    for name, peer, label, factory in LIMITER_PEERS:
        version = peer.version()
        if version is None:
            missing.append(peer.distribution)
            continue

        def make_fast(factory: Any = factory) -> TryAcquire:
            decide = factory(LIMIT, int(PERIOD_S))
            return lambda: decide("subject")

        targets.append(Target(f"{label} {version}", make_fast, KINDS[name], ours=False))
    return targets, sorted(set(missing))
