"""Accuracy under threads: counted admissions against the algorithm's bound.

Eight threads hammer one key (or one Limiter) on an injected clock that
advances a fixed step per reading, so the test is deterministic in what it
checks: however the threads interleave, the admissions may never exceed the
bound over the time span the clock covered, and a correct limiter reaches at
least 95% of it. Both implementations. No thread sleeps.
"""

from __future__ import annotations

import threading

import pytest

from ratefuse.rates import Rate, build_specs

numpy = pytest.importorskip("numpy")

MS = 1_000_000
SECRET = bytes(range(16))
THREADS = 8
RATE = Rate(100, 1.0)  # T = 10 ms, capacity 100


class SteppingClock:
    """`SteppingClock` returns ``start + i * step_ns`` at its i-th reading
    (thread-safe) and remembers the first and the last reading."""

    def __init__(self, step_ns: int, start_ns: int = 1_000 * MS) -> None:
        self._lock = threading.Lock()
        self._next = start_ns
        self.step_ns = step_ns
        self.first = start_ns
        self.last = start_ns

    def __call__(self) -> int:
        with self._lock:
            self.last = now = self._next
            self._next += self.step_ns
            return now


def hammer(try_acquire, calls_per_thread: int) -> int:
    """`hammer` runs ``try_acquire()`` from THREADS threads started together
    and returns how many calls were admitted."""
    start = threading.Barrier(THREADS)
    admitted = [0] * THREADS

    def worker(index: int) -> None:
        start.wait()
        count = 0
        for _ in range(calls_per_thread):
            count += try_acquire()
        admitted[index] = count

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(admitted)


def bound(algorithm: str, rate: Rate, first: int, last: int) -> int:
    """`bound` is the most ``algorithm`` may admit over [first, last] ns,
    whatever the order in which threads present their readings: a meter
    holds ``capacity`` plus one unit per T (tat starts at or after
    ``first`` and may not pass ``last + tau``); a fixed window holds
    ``limit`` per window touched."""
    if algorithm == "fixed_window":
        windows = last // rate.period_ns - first // rate.period_ns + 1
        return rate.limit * windows
    return rate.capacity + (last - first) // rate.interval_ns


ALGORITHMS = ["gcra", "leaky_bucket", "fixed_window"]


def check_accuracy(admitted: int, algorithm: str, clock: SteppingClock) -> None:
    most = bound(algorithm, RATE, clock.first, clock.last)
    assert admitted <= most, f"over-admitted: {admitted} > {most}"
    assert admitted >= 0.95 * most, f"under-used: {admitted} < 95% of {most}"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_threads_on_one_key_never_over_admit(impl, algorithm: str) -> None:
    clock = SteppingClock(2_500_000)  # four readings per T
    keyed = impl.module("engine._keyed").KeyedLimiterCore(
        build_specs([RATE], algorithm), 1000, clock, SECRET
    )
    calls = 2_000 if impl.name == "cython" else 500
    admitted = hammer(lambda: keyed.try_acquire("hot"), calls)
    check_accuracy(admitted, algorithm, clock)
    assert keyed.stats()["evictions"] == 0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_threads_on_one_limiter_never_over_admit(impl, algorithm: str) -> None:
    clock = SteppingClock(2_500_000)
    limiter = impl.module("engine._subject").LimiterCore(
        build_specs([RATE], algorithm), clock
    )
    calls = 2_000 if impl.name == "cython" else 500
    admitted = hammer(limiter.try_acquire, calls)
    check_accuracy(admitted, algorithm, clock)


def test_threads_with_costs_and_decisions(impl) -> None:
    """Mixed verbs and costs on one key: units, not calls, are bounded."""
    clock = SteppingClock(5_000_000)
    keyed = impl.module("engine._keyed").KeyedLimiterCore(
        build_specs([RATE], "gcra"), 1000, clock, SECRET
    )
    units = iter(range(10**9))  # each thread draws its next cost from this

    def mixed() -> int:
        cost = next(units) % 3 + 1
        if cost == 2:
            return cost * keyed.decide("hot", cost).allowed
        return cost * keyed.try_acquire("hot", cost)

    admitted = hammer(mixed, 1_000 if impl.name == "cython" else 300)
    most = bound("gcra", RATE, clock.first, clock.last)
    assert most * 0.95 <= admitted <= most


def test_batch_and_single_calls_on_the_same_keys(impl) -> None:
    """decide_many over int64 ids (without the GIL in the compiled engine)
    racing single-key calls on the same keys: per key, the admissions stay
    within capacity + span / T, and all of it is used."""
    rate = Rate(10, 1.0)  # T = 100 ms
    keyed = impl.module("engine._keyed").KeyedLimiterCore(
        build_specs([rate], "gcra"), 1_000_000, None, SECRET
    )
    keys = 64
    rounds = 100 if impl.name == "cython" else 20
    times = [round_index * 100 * MS for round_index in range(rounds)]
    ids = numpy.tile(numpy.arange(keys, dtype=numpy.int64), 40)
    # One tally per thread: a shared array's += would lose updates.
    tallies = [numpy.zeros(keys, dtype=numpy.int64) for _ in range(3)]
    start = threading.Barrier(3)

    def batches(tally) -> None:
        start.wait()
        for now in times:
            allowed = keyed.decide_many(ids, 1, now)
            numpy.add.at(tally, ids, allowed)

    def singles(tally, order: range) -> None:
        start.wait()
        for now in times:
            for _ in range(3):
                for key in order:
                    tally[key] += keyed.try_acquire(key, 1, now)

    threads = [
        threading.Thread(target=batches, args=(tallies[0],)),
        threading.Thread(target=singles, args=(tallies[1], range(keys))),
        threading.Thread(target=singles, args=(tallies[2], range(keys)[::-1])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    most = rate.capacity + (times[-1] - times[0]) // rate.interval_ns
    assert sum(tallies).tolist() == [most] * keys


def test_back_to_back_batches_do_not_starve_single_calls(impl) -> None:
    """A thread issuing decide_many after decide_many must let a single-key
    caller in between batches. Counted in batches, not seconds: the table
    is taken in turn, so at most the batch running when a call arrives (plus
    one counted late) completes while the call waits. With a busy flag the
    batch thread took the table back before the waiter woke: a call waited
    through thousands of batches (seconds, once a minute)."""
    keyed = impl.module("engine._keyed").KeyedLimiterCore(
        build_specs([RATE], "gcra"), 1_000_000, None, SECRET
    )
    ids = numpy.arange(1_000 if impl.name == "cython" else 10_000, dtype=numpy.int64)
    calls = 5_000 if impl.name == "cython" else 100
    stop = threading.Event()
    batches = 0

    def flood() -> None:
        nonlocal batches
        while not stop.is_set():
            keyed.decide_many(ids, 0, 0)
            batches += 1

    # A timer ends the flood if a call is starved, so the test cannot hang.
    deadline = threading.Timer(60.0, stop.set)
    flooder = threading.Thread(target=flood)
    flooder.start()
    deadline.start()
    most = 0
    try:
        while batches == 0:
            keyed.try_acquire("single", 0, 0)
        for _ in range(calls):  # from the main thread, as a server's would be
            before = batches
            keyed.try_acquire("single", 0, 0)
            most = max(most, batches - before)
    finally:
        stop.set()
        deadline.cancel()
        flooder.join()
    assert most <= 2, f"a single call waited through {most} batches"


def test_a_cancel_racing_other_reservations_refunds_its_own(impl) -> None:
    """A cancel waiting behind a batch must refund with its own stamps, not
    with those of a reservation served meanwhile (the compiled engine keeps
    them in one shared buffer). Each reservation's slot has passed when it is
    cancelled, so a correct cancel gives nothing back."""
    keyed = impl.module("engine._keyed").KeyedLimiterCore(
        build_specs([Rate(1000, 1.0, 10**6)], "gcra"), 10**7, None, SECRET
    )
    ids = numpy.arange(2_000, dtype=numpy.int64) + 10**12
    stop = threading.Event()
    wrong: list[int] = []

    def flood() -> None:
        while not stop.is_set():
            keyed.decide_many(ids, 0, 0)

    def reserve_far_ahead() -> None:
        while not stop.is_set():
            keyed.reserve("far ahead", 1, None, 0)  # ever later stamps

    def cancel_past_slots() -> None:
        for key in range(1_000 if impl.name == "cython" else 300):
            keyed.reserve(key, 1, None, 0).cancel(2 * MS)  # slot ended at 1 ms
            if keyed.decide(key, 0, 0).remaining != 10**6 - 1:
                wrong.append(key)

    others = [
        threading.Thread(target=flood),
        threading.Thread(target=reserve_far_ahead),
    ]
    canceller = threading.Thread(target=cancel_past_slots)
    for thread in [*others, canceller]:
        thread.start()
    canceller.join(timeout=30.0)
    finished = not canceller.is_alive()
    stop.set()
    for thread in [*others, canceller]:
        thread.join()
    assert finished, "the cancelling thread was starved"
    assert wrong == []
