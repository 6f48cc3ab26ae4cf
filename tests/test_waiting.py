"""Reservations and waiting, on a manual clock that only sleeps move.

The verbs on the cores run on both implementations and on both engines
(single-subject LimiterCore, KeyedLimiterCore on one key); the decorator and
context-manager forms run on the public classes. Nothing here sleeps: an
injected ``sleep`` records the seconds and advances the clock, and asyncio
tests get an ``async_sleep`` that does the same.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from ratefuse import KeyedLimiter, Limiter, Rate, RateLimitExceeded
from ratefuse.rates import build_specs

MS = 1_000_000
INF = math.inf
SECRET = bytes(range(16))
EVERY_100_MS = Rate(10, 1.0, 1)  # T = 100 ms, burst 1


class ManualClock:
    """`ManualClock` is integer ns that only ``sleep``/``async_sleep`` (or
    the test) move; every sleep is recorded in ``sleeps``."""

    def __init__(self, now_ns: int = 0) -> None:
        self.now_ns = now_ns
        self.sleeps: list[float] = []
        self.interrupt: BaseException | None = None

    def __call__(self) -> int:
        return self.now_ns

    def sleep(self, seconds: float) -> None:
        if self.interrupt is not None:
            raise self.interrupt
        self.sleeps.append(seconds)
        self.now_ns += round(seconds * 1e9)

    async def async_sleep(self, seconds: float) -> None:
        # Concurrent sleepers all started now: time ends at the latest wake.
        wake = self.now_ns + round(seconds * 1e9)
        self.sleeps.append(seconds)
        if self.interrupt is not None:
            await asyncio.Event().wait()  # until cancelled
        await asyncio.sleep(0)
        self.now_ns = max(self.now_ns, wake)


class OneKey:
    """`OneKey` drives a keyed core through one key, like a LimiterCore."""

    def __init__(self, core, key: object = "k") -> None:
        self.core, self.key = core, key

    def __getattr__(self, verb: str):
        method = getattr(self.core, verb)
        return lambda *args, **kwargs: method(self.key, *args, **kwargs)


@pytest.fixture(params=["single", "keyed"])
def make(request, impl):
    """`make(rate, algorithm, clock, **options)` builds a core of ``impl``:
    a LimiterCore, or a KeyedLimiterCore seen through one key."""

    def build(rate: Rate, algorithm: str, clock: ManualClock, **options):
        specs = build_specs([rate], algorithm)
        sleeps = {"sleep": clock.sleep, "async_sleep": clock.async_sleep}
        if request.param == "single":
            engine = impl.module("engine._subject").LimiterCore
            return engine(specs, clock, **sleeps, **options)
        keyed = impl.module("engine._keyed").KeyedLimiterCore
        return OneKey(keyed(specs, 1000, clock, SECRET, **sleeps, **options))

    return build


def delays(reservations) -> list[float]:
    return [r.delay if r.ok else -r.delay for r in reservations]


def next_slot(core) -> float:
    """`next_slot` is the delay a reservation of 1 would get (gcra: the
    reservation is cancelled, which is exact)."""
    reservation = core.reserve()
    reservation.cancel()
    return reservation.delay


# ---- reserve and cancel ----


@pytest.mark.parametrize("algorithm", ["gcra", "leaky_bucket"])
def test_reserve_schedules_ahead(make, algorithm: str) -> None:
    core = make(Rate(10, 1.0, 2), algorithm, ManualClock())  # tau = 200 ms
    reservations = [core.reserve() for _ in range(5)]
    assert delays(reservations) == [0.0, 0.0, 0.1, 0.2, 0.3]
    assert all(
        r.decision.allowed and r.decision.retry_after == 0.0 for r in reservations
    )
    assert core.reserve(2).delay == 0.5
    never = core.reserve(3)  # above capacity
    assert (never.ok, never.delay, never.decision.retry_after) == (False, INF, INF)


@pytest.mark.parametrize("algorithm", ["gcra", "leaky_bucket"])
def test_reserve_within_max_wait(make, algorithm: str) -> None:
    core = make(EVERY_100_MS, algorithm, ManualClock(), max_wait=0.15)
    refused = [core.reserve(), core.reserve(), core.reserve()][-1]
    assert (refused.ok, refused.delay) == (False, 0.2)
    assert (refused.decision.allowed, refused.decision.retry_after) == (False, 0.2)
    refused.cancel()  # nothing was taken, nothing is given back
    assert core.reserve(1, 0.2).delay == 0.2  # a per-call bound overrides


@pytest.mark.parametrize("algorithm", ["gcra", "leaky_bucket"])
def test_cancel_gives_the_slot_back_exactly(make, algorithm: str) -> None:
    core = make(Rate(10, 1.0, 2), algorithm, ManualClock())
    held = [core.reserve() for _ in range(4)]
    assert delays(held) == [0.0, 0.0, 0.1, 0.2]
    held[2].cancel()
    held[2].cancel()  # idempotent
    assert core.reserve().delay == 0.2  # the cancelled slot, not 0.3
    assert core.reserve().delay == 0.3


def test_cancel_after_the_slot_passed_gives_nothing_back(make) -> None:
    clock = ManualClock()
    core = make(EVERY_100_MS, "gcra", clock)
    held = [core.reserve() for _ in range(3)]  # slots end at 100, 200, 300 ms
    clock.now_ns = 150 * MS
    held[0].cancel()  # over at 100 ms: nothing left to give back
    assert core.reserve(0).delay == 0.05
    held[2].cancel(now=250 * MS)  # half of [200, 300) ms is still ahead
    assert core.reserve(1, None, 250 * MS).delay == 0.0  # not 0.05


def test_fixed_window_reserves_only_what_fits_now(make) -> None:
    clock = ManualClock(250 * MS)
    core = make(Rate(3, 1.0), "fixed_window", clock)
    first = core.reserve(2)
    refused = core.reserve(2)
    assert (first.ok, first.delay) == (True, 0.0)
    assert (refused.ok, refused.delay) == (False, 0.75)
    assert core.reserve(4).delay == INF
    assert core.decide(0).remaining == 1  # the refusal took nothing
    first.cancel()
    assert core.decide(0).remaining == 3
    late = core.reserve(2)
    clock.now_ns = 1_200 * MS  # the next window
    assert core.try_acquire(1)
    late.cancel()  # its window is over: nothing to give back
    assert core.decide(0).remaining == 2


def test_sliding_window_cancel_returns_units_while_they_weigh(make) -> None:
    clock = ManualClock(250 * MS)
    core = make(Rate(4, 1.0), "sliding_window", clock)
    held = [core.reserve(2), core.reserve(2)]
    held[0].cancel()
    assert core.decide(0).remaining == 2
    clock.now_ns = 1_250 * MS  # the 2 units left weigh 3/4 from the last window
    assert core.decide(0).remaining == 2
    held[1].cancel()
    assert core.decide(0).remaining == 4


def test_sliding_log_cancel_gives_nothing_back(make) -> None:
    core = make(Rate(2, 1.0), "sliding_log", ManualClock())
    core.reserve(2).cancel()
    assert core.decide(0).remaining == 0


# ---- acquire ----


@pytest.mark.parametrize("algorithm", ["gcra", "leaky_bucket"])
def test_acquire_sleeps_exactly_the_wait(make, algorithm: str) -> None:
    clock = ManualClock()
    core = make(EVERY_100_MS, algorithm, clock)
    for _ in range(4):
        core.acquire()
    assert clock.sleeps == [0.1, 0.1, 0.1]
    assert clock.now_ns == 300 * MS


@pytest.mark.parametrize(
    ("algorithm", "wait"), [("fixed_window", 0.75), ("sliding_window", 1.25)]
)
def test_acquire_on_a_window_sleeps_then_takes(make, algorithm, wait) -> None:
    clock = ManualClock(250 * MS)
    core = make(Rate(2, 1.0), algorithm, clock)
    for _ in range(3):
        core.acquire()
    assert clock.sleeps == [wait]
    assert not core.try_acquire(2)


@pytest.mark.parametrize(
    ("algorithm", "rate"), [("gcra", EVERY_100_MS), ("fixed_window", Rate(1, 0.1))]
)
def test_acquire_raises_at_once_past_the_timeout(make, algorithm, rate) -> None:
    clock = ManualClock()
    core = make(rate, algorithm, clock)
    core.acquire()
    with pytest.raises(RateLimitExceeded) as raised:
        core.acquire(1, 0.099)
    assert raised.value.retry_after == 0.1
    assert (raised.value.decision.allowed, raised.value.decision.limit) == (False, 1)
    assert clock.sleeps == []
    core.acquire(1, 0.1)  # a wait of exactly the timeout is fine
    assert clock.sleeps == [0.1]
    with pytest.raises(RateLimitExceeded) as raised:
        core.acquire(2)  # above capacity: it can never happen
    assert raised.value.retry_after == INF
    assert clock.sleeps == [0.1]


def test_acquire_never_waits_past_max_wait(make) -> None:
    """`max_wait` bounds every acquire's wait (Limiter's docstring): a
    caller beyond the queue is refused at once, not slept past it."""
    clock = ManualClock()
    core = make(EVERY_100_MS, "leaky_bucket", clock, max_wait=0.25)
    queued = [core.reserve() for _ in range(3)]
    assert delays(queued) == [0.0, 0.1, 0.2]
    with pytest.raises(RateLimitExceeded):
        core.acquire()
    assert clock.sleeps == []


def test_an_interrupted_sleep_gives_the_reservation_back(make) -> None:
    clock = ManualClock()
    core = make(EVERY_100_MS, "gcra", clock)
    core.acquire()
    clock.interrupt = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        core.acquire()
    assert next_slot(core) == 0.1  # its slot is free again, not 0.2


# ---- acquire_async ----


def test_acquire_async_spaces_concurrent_callers(make) -> None:
    clock = ManualClock()
    core = make(EVERY_100_MS, "leaky_bucket", clock, max_wait=0.25)

    async def callers() -> None:
        await asyncio.gather(*(core.acquire_async() for _ in range(3)))

    asyncio.run(callers())
    assert sorted(clock.sleeps) == [0.1, 0.2]
    assert clock.now_ns == 200 * MS


def test_acquire_async_raises_at_once(make) -> None:
    clock = ManualClock()
    core = make(Rate(10, 1.0, 2), "gcra", clock)

    async def scenario() -> None:
        await core.acquire_async(2)
        with pytest.raises(RateLimitExceeded) as raised:
            await core.acquire_async(1, 0.05)
        assert raised.value.retry_after == 0.1
        with pytest.raises(RateLimitExceeded) as raised:
            await core.acquire_async(3)
        assert raised.value.retry_after == INF
        assert clock.sleeps == []
        await core.acquire_async(1, 0.1)
        assert clock.sleeps == [0.1]

    asyncio.run(scenario())


def test_a_cancelled_async_wait_gives_the_reservation_back(make) -> None:
    clock = ManualClock()
    core = make(EVERY_100_MS, "gcra", clock)

    async def scenario() -> None:
        await core.acquire_async()
        clock.interrupt = asyncio.CancelledError()
        waiting = asyncio.ensure_future(core.acquire_async())
        await asyncio.sleep(0)
        assert clock.sleeps == [0.1]  # it is asleep, holding the slot
        assert next_slot(core) == 0.2
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert next_slot(core) == 0.1

    asyncio.run(scenario())


# ---- decorators and context managers (public classes) ----


def public(kind: type, clock: ManualClock, rate: str = "2/s"):
    return kind(rate, clock=clock, sleep=clock.sleep, async_sleep=clock.async_sleep)


def test_limiter_decorates_sync_and_async_functions() -> None:
    clock = ManualClock()
    limiter = public(Limiter, clock)  # T = 500 ms, burst 2
    calls: list[int] = []

    @limiter.limit()
    def double(value: int) -> int:
        return 2 * value

    @limiter.limit(2, timeout=1.0)
    async def triple(value: int) -> int:
        return 3 * value

    @limiter.limit(2, wait=False)
    def now_or_never(value: int) -> None:
        calls.append(value)

    @limiter.limit(wait=False)
    async def impatient(value: int) -> None:
        calls.append(value)

    assert double.__name__ == "double"
    assert [double(1), double(2)] == [2, 4]
    assert clock.sleeps == []
    assert asyncio.run(triple(1)) == 3  # a wait of exactly the timeout
    assert clock.sleeps == [1.0]
    with pytest.raises(RateLimitExceeded) as raised:
        now_or_never(1)
    assert raised.value.decision.astuple() == (False, 0, 1.0, 1.0, 2)
    with pytest.raises(RateLimitExceeded):
        asyncio.run(impatient(2))
    clock.now_ns += 1_000 * MS
    now_or_never(3)
    assert calls == [3]
    assert clock.sleeps == [1.0]


def test_keyed_decorator_with_a_key_function() -> None:
    clock = ManualClock()
    limiter = public(KeyedLimiter, clock, "1/s")

    @limiter.limit(lambda user, **_: user, wait=False)
    def fetch(user: str, *, page: int = 0) -> tuple[str, int]:
        return user, page

    @limiter.limit(lambda user: f"async:{user}")
    async def fetch_async(user: str) -> str:
        return user

    @limiter.limit(b"shared", wait=False)
    def shared() -> None: ...

    assert fetch("ann", page=2) == ("ann", 2)
    assert fetch("bob") == ("bob", 0)
    with pytest.raises(RateLimitExceeded):
        fetch("ann", page=3)
    assert [asyncio.run(fetch_async("ann")) for _ in range(2)] == ["ann", "ann"]
    assert clock.sleeps == [1.0]
    shared()
    with pytest.raises(RateLimitExceeded):
        shared()


@pytest.mark.parametrize("kind", [Limiter, KeyedLimiter])
def test_acquiring_with_and_async_with(kind: type) -> None:
    clock = ManualClock()
    limiter = public(kind, clock, "1/s")
    args = ("key",) if kind is KeyedLimiter else ()
    with limiter.acquiring(*args):
        pass
    with limiter.acquiring(*args, 1, 1.0):
        assert clock.now_ns == 1_000 * MS
    with pytest.raises(RateLimitExceeded), limiter.acquiring(*args, 1, 0.5):
        pytest.fail("entered without units")

    async def scenario() -> None:
        async with limiter.acquiring(*args):
            assert clock.now_ns == 2_000 * MS

    asyncio.run(scenario())
    assert clock.sleeps == [1.0, 1.0]


# ---- bad bounds ----

BAD_BOUNDS = [
    (-1, "must be >= 0"),
    (math.nan, "must be >= 0"),
    ("1", "must be a number of seconds"),
]


@pytest.mark.parametrize(("bad", "match"), BAD_BOUNDS)
def test_bad_timeout_and_max_wait(make, bad, match: str) -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match=f"max_wait {match}"):
        make(EVERY_100_MS, "gcra", clock, max_wait=bad)
    core = make(EVERY_100_MS, "gcra", clock)
    with pytest.raises(ValueError, match=f"timeout {match}"):
        core.acquire(1, bad)
    with pytest.raises(ValueError, match=f"timeout {match}"):
        core.acquire_async(1, bad)
    assert core.decide(0).remaining == 1


@pytest.mark.parametrize(("bad", "match"), BAD_BOUNDS)
def test_bad_max_wait_of_reserve_is_named(make, bad, match: str) -> None:
    core = make(EVERY_100_MS, "gcra", ManualClock())
    with pytest.raises(ValueError, match=f"max_wait {match}"):
        core.reserve(1, bad)
    assert core.decide(0).remaining == 1


@pytest.mark.parametrize(("bad", "match"), BAD_BOUNDS)
@pytest.mark.parametrize("kind", [Limiter, KeyedLimiter])
def test_public_classes_refuse_bad_bounds(kind: type, bad, match: str) -> None:
    with pytest.raises(ValueError, match=f"max_wait {match}"):
        kind("1/s", max_wait=bad)
    limiter = kind("1/s")
    args = ("key",) if kind is KeyedLimiter else ()
    with pytest.raises(ValueError, match=f"timeout {match}"):
        limiter.acquire(*args, 1, bad)
