"""FleetBreaker against the real single node and the 3-primary cluster:
several breakers with their own connections stand for a fleet's processes
(test_fleet_breaker_processes.py uses real processes). Time is one manual
clock for the breakers (ns) and the script (us): nothing waits for time to
pass, and every breaker flushes by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
import redis
from fleet_breaker_support import (
    FleetClock,
    fail,
    flush_all,
    fresh_fleet_name,
    make_breaker,
    succeed,
)
from redis.cluster import RedisCluster

from ratefuse import CircuitOpenError
from ratefuse.breaker import BreakerConfig, IllegalTransitionError, State
from ratefuse.redis import KEY_VERSION, FleetBreaker
from ratefuse.redis._fleet_stats import DEFAULT_FLEET_MAX_HALF_OPEN

Client = redis.Redis | RedisCluster

# Trips once 6 calls are in the window and half of them failed.
CONFIG = BreakerConfig(
    window_size=10,
    minimum_calls=6,
    failure_rate_threshold=50.0,
    wait_duration=10.0,
    backoff_multiplier=2.0,
    half_open_calls=3,
)


@pytest.fixture(params=["node", "cluster"])
def make_client(request: pytest.FixtureRequest) -> Iterator[Callable[[], Client]]:
    """`make_client()` opens a client of the single node or of the cluster
    (a new connection each: one per simulated process)."""
    opened: list[Client] = []

    def make() -> Client:
        client: Client
        if request.param == "node":
            port = request.getfixturevalue("redis_node").port
            client = redis.Redis(host="127.0.0.1", port=port)
        else:
            port = request.getfixturevalue("redis_cluster").ports[0]
            client = RedisCluster(host="127.0.0.1", port=port)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def clock() -> FleetClock:
    return FleetClock()


@pytest.fixture
def fleet(
    make_client: Callable[[], Client], clock: FleetClock
) -> Iterator[Callable[..., list[FleetBreaker]]]:
    """`fleet(n, config)` is n FleetBreakers sharing one fresh name."""
    made: list[FleetBreaker] = []

    def build(count: int, config: BreakerConfig = CONFIG, **options: object):
        name = fresh_fleet_name()
        breakers = [
            make_breaker(make_client(), name, config, clock, **options)
            for _ in range(count)
        ]
        made.extend(breakers)
        return breakers

    yield build
    for breaker in made:
        breaker.close()


def trip(breakers: list[FleetBreaker]) -> None:
    # Six failures spread over the breakers open the fleet; every breaker
    # then knows.
    for index in range(6):
        fail(breakers[index % len(breakers)])
    flush_all(breakers)
    flush_all(breakers)
    assert [breaker.state for breaker in breakers] == [State.OPEN] * len(breakers)


def test_the_fleet_trips_for_every_process(fleet) -> None:
    breakers = fleet(4)
    # 3 processes see 1 failure and 1 success each: 50% of 6 calls, fleet
    # wide, though no process alone holds minimum_calls.
    for breaker in breakers[:3]:
        fail(breaker)
        succeed(breaker)
        breaker.flush()
    assert breakers[3].state == State.CLOSED  # has not flushed since
    flush_all(breakers)
    assert [breaker.state for breaker in breakers] == [State.OPEN] * 4
    for breaker in breakers:
        assert breaker.try_acquire() is None
        assert breaker.retry_after() == pytest.approx(10.0)
        with pytest.raises(CircuitOpenError):
            breaker.call(lambda: "never called")
    metrics = breakers[3].metrics()
    assert (metrics.calls, metrics.failed_calls, metrics.failure_rate) == (6, 3, 50.0)
    assert breakers[0].stats().outcomes_flushed == 2


def test_successes_anywhere_keep_the_fleet_closed(fleet) -> None:
    breakers = fleet(3)
    fail(breakers[0], 2)
    succeed(breakers[1], 3)
    succeed(breakers[2], 3)
    flush_all(breakers * 2)
    assert [breaker.state for breaker in breakers] == [State.CLOSED] * 3
    assert breakers[0].metrics().calls == 8


def test_half_open_sends_at_most_half_open_calls_probes_fleet_wide(
    fleet, clock: FleetClock
) -> None:
    breakers = fleet(4)
    trip(breakers)
    clock.advance(10.0)
    permits = [breaker.try_acquire() for breaker in breakers for _ in range(3)]
    granted = [permit for permit in permits if permit is not None]
    assert len(granted) == CONFIG.half_open_calls
    assert {breaker.state for breaker in breakers} == {State.HALF_OPEN}
    # Later calls are still rejected, fleet-wide, until the round is over.
    clock.advance(1.0)
    assert all(breaker.try_acquire() is None for breaker in breakers)
    for permit in granted:
        permit.on_success(0.0)
    flush_all(breakers * 2)
    assert [breaker.state for breaker in breakers] == [State.CLOSED] * 4
    assert sum(breaker.stats().probes_granted for breaker in breakers) == 3


def test_a_failed_probe_round_reopens_for_longer(fleet, clock: FleetClock) -> None:
    breakers = fleet(3)
    trip(breakers)
    clock.advance(10.0)
    granted = [breaker.try_acquire() for breaker in breakers]
    assert all(permit is not None for permit in granted)
    for permit in granted:
        permit.on_error(0.0, RuntimeError("still down"))  # type: ignore[union-attr]
    flush_all(breakers * 2)
    assert [breaker.state for breaker in breakers] == [State.OPEN] * 3
    assert breakers[2].retry_after() == pytest.approx(20.0)
    clock.advance(19.9)
    assert breakers[0].try_acquire() is None


def test_a_released_probe_frees_a_fleet_wide_slot(fleet, clock: FleetClock) -> None:
    breakers = fleet(2)
    trip(breakers)
    clock.advance(10.0)
    mine = [breakers[0].try_acquire() for _ in range(3)]
    assert all(permit is not None for permit in mine)
    assert breakers[1].try_acquire() is None
    mine[0].release()  # type: ignore[union-attr]
    breakers[0].flush()
    clock.advance(1.0)  # past the pause after a refused probe request
    assert breakers[1].try_acquire() is not None


def test_a_probe_that_never_reports_ends_its_round_by_default(
    fleet, clock: FleetClock
) -> None:
    # The probe's process died: without max_half_open_duration in the config,
    # a fleet breaker still ends the round (DEFAULT_FLEET_MAX_HALF_OPEN), or
    # the fleet would stay HALF_OPEN, refusing everything, forever.
    assert CONFIG.max_half_open_duration is None
    breakers = fleet(2)
    assert breakers[0].config.max_half_open_duration == DEFAULT_FLEET_MAX_HALF_OPEN
    trip(breakers)
    clock.advance(10.0)
    lost = [breakers[0].try_acquire() for _ in range(3)]
    assert all(permit is not None for permit in lost)  # never reported
    clock.advance(DEFAULT_FLEET_MAX_HALF_OPEN - 1.0)
    assert breakers[1].try_acquire() is None
    clock.advance(1.0)
    assert breakers[1].try_acquire() is None  # the round is over: reopen
    flush_all(breakers * 2)
    assert [breaker.state for breaker in breakers] == [State.OPEN] * 2
    clock.advance(breakers[0].retry_after())  # the next wait, with backoff
    assert breakers[1].try_acquire() is not None


def test_stale_outcomes_do_not_count(fleet) -> None:
    breakers = fleet(3)
    late = breakers[0].try_acquire()
    assert late is not None
    trip(breakers)
    late.on_error(0.0, RuntimeError("from the CLOSED generation"))
    breakers[0].flush()
    assert breakers[0].stats().outcomes_dropped == 1
    assert breakers[0].metrics().calls == 6


def test_time_window_forgets_old_buckets(fleet, clock: FleetClock) -> None:
    config = BreakerConfig(
        window_type="time",
        window_duration=10.0,
        window_buckets=10,
        minimum_calls=4,
        failure_rate_threshold=50.0,
    )
    breakers = fleet(2, config)
    fail(breakers[0], 3)
    breakers[0].flush()
    clock.advance(11.0)
    # The three failures have left the window: one more is not enough.
    fail(breakers[1])
    succeed(breakers[1], 2)
    flush_all(breakers)
    assert breakers[1].state == State.CLOSED
    assert breakers[1].metrics().calls == 3
    fail(breakers[1], 2)
    flush_all(breakers * 2)
    assert [breaker.state for breaker in breakers] == [State.OPEN] * 2


def test_slow_calls_trip_the_fleet(fleet) -> None:
    config = BreakerConfig(
        slow_call_duration=0.5,
        slow_call_rate_threshold=50.0,
        minimum_calls=4,
        window_size=10,
    )
    breakers = fleet(2, config)
    assert breakers[0].timed
    for breaker in breakers:
        permit = breaker.try_acquire()
        assert permit is not None
        permit.on_success(0.75)
        permit.on_success(0.25)
        breaker.flush()
    flush_all(breakers)
    assert [breaker.state for breaker in breakers] == [State.OPEN] * 2
    assert breakers[0].metrics().slow_calls == 2


def test_every_key_has_a_ttl(fleet, make_client, clock: FleetClock) -> None:
    breakers = fleet(2, idle_ttl=60.0)
    fail(breakers[0])
    breakers[0].flush()
    reader = make_client()
    for key in breakers[0].keys:
        assert 0 < reader.pttl(key) <= 60_000 + 10_000
    trip(breakers)
    state_key = breakers[0].keys[0]
    # OPEN: the state outlives its wait by the idle TTL.
    assert 60_000 < reader.pttl(state_key) <= 70_000
    time_config = BreakerConfig(window_type="time", window_duration=1.0)
    timed = fleet(1, time_config, idle_ttl=1.0)[0]
    fail(timed)
    timed.flush()
    for key in timed.keys:
        assert 0 < reader.pttl(key) <= 1_000 + 30_000


def test_keys_follow_the_schema(make_client, clock: FleetClock) -> None:
    client = make_client()
    plain = make_breaker(client, fresh_fleet_name(), CONFIG, clock)
    hostile = make_breaker(client, "}{:\udcff" + "x" * 1_000_000, CONFIG, clock)
    try:
        for breaker in (plain, hostile):
            state_key, window_key = breaker.keys
            assert state_key.startswith(b"ratefuse:{")
            assert state_key.endswith(b":fleet_breaker:v%d" % KEY_VERSION)
            # One hashed tag: one cluster slot; nothing of the name in it.
            assert state_key.split(b"}")[0] == window_key.split(b"}")[0]
            assert len(state_key) == len(plain.keys[0])
            assert client.exists(state_key) == 1
        assert hostile.keys != plain.keys
    finally:
        plain.close()
        hostile.close()


def test_manual_transitions_are_fleet_wide(fleet) -> None:
    breakers = fleet(2)
    breakers[0].force_open()
    breakers[1].flush()
    assert breakers[1].state == State.FORCED_OPEN
    assert breakers[1].try_acquire() is None
    assert breakers[1].retry_after() == float("inf")
    breakers[1].disable()
    breakers[0].flush()
    assert breakers[0].state == State.DISABLED
    fail(breakers[0], 10)
    breakers[0].flush()
    assert breakers[0].state == State.DISABLED
    breakers[0].reset()
    breakers[1].flush()
    assert breakers[1].state == State.CLOSED
    with pytest.raises(IllegalTransitionError):
        breakers[1].transition_to(State.HALF_OPEN)


def test_waits_and_tallies_follow_resilience4j_fleet_wide(fleet) -> None:
    # Issue 21 item 20, in the script: a manual re-open grows the wait, an
    # OPEN entered from DISABLED takes the base wait, and each state shows
    # its own tally (OPEN from CLOSED the window, DISABLED nothing).
    breakers = fleet(2)
    trip(breakers)
    assert breakers[1].retry_after() == pytest.approx(10.0)
    breakers[0].transition_to(State.OPEN)
    breakers[1].flush()
    assert breakers[1].retry_after() == pytest.approx(20.0)
    assert breakers[1].metrics().calls == 6
    breakers[1].disable()
    breakers[0].flush()
    assert breakers[0].metrics().calls == 0
    breakers[0].transition_to(State.OPEN)
    breakers[1].flush()
    assert breakers[1].retry_after() == pytest.approx(10.0)


def test_a_fleet_probe_round_is_judged_on_its_minimum_calls(
    fleet, clock: FleetClock
) -> None:
    config = BreakerConfig(
        window_size=10, minimum_calls=2, wait_duration=1.0, half_open_calls=4
    )
    breakers = fleet(1, config)
    fail(breakers[0], 2)
    breakers[0].flush()
    assert breakers[0].state == State.OPEN
    clock.advance(1.0)
    probes = [breakers[0].try_acquire() for _ in range(4)]
    for permit in probes[:2]:
        permit.on_success(0.0)  # type: ignore[union-attr]
    breakers[0].flush()
    assert breakers[0].state == State.CLOSED


class Interrupt(BaseException):
    """`Interrupt` stands for KeyboardInterrupt raised in a listener."""


def test_a_listener_interrupting_a_probe_frees_it_and_delivery_resumes(
    fleet, clock: FleetClock
) -> None:
    # Issue 21 item 3 in the fleet: the probe the caller never saw stayed
    # out fleet-wide, and no listener ran again.
    config = BreakerConfig(
        window_size=2, minimum_calls=1, wait_duration=1.0, half_open_calls=1
    )
    (breaker,) = fleet(1, config)
    seen: list[tuple[State, State]] = []

    def interrupting(_: object, old: State, new: State) -> None:
        if new == State.HALF_OPEN:
            raise Interrupt

    breaker.add_listener(interrupting)
    breaker.add_listener(lambda _, old, new: seen.append((old, new)))
    fail(breaker)
    breaker.flush()
    clock.advance(1.0)
    with pytest.raises(Interrupt):
        breaker.try_acquire()
    breaker.remove_listener(interrupting)
    breaker.flush()  # sends the released probe
    clock.advance(1.0)  # past the pause after a refused request
    probe = breaker.try_acquire()
    assert probe is not None
    probe.on_success(0.0)
    breaker.flush()
    assert breaker.state == State.CLOSED
    assert seen[-1] == (State.HALF_OPEN, State.CLOSED)


def test_forms_and_listeners(fleet) -> None:
    seen: list[tuple[State, State]] = []
    breakers = fleet(3)
    breakers[0].add_listener(lambda breaker, old, new: seen.append((old, new)))

    @breakers[0]
    def flaky() -> str:
        raise RuntimeError("down")

    @breakers[0]
    async def flaky_async() -> str:
        raise RuntimeError("down")

    with pytest.raises(RuntimeError):
        flaky()
    with pytest.raises(RuntimeError):
        asyncio.run(flaky_async())
    with pytest.raises(RuntimeError), breakers[0].guard():
        raise RuntimeError("down")
    assert breakers[0].call(lambda value: value, 7) == 7
    breakers[0].flush()
    assert breakers[0].metrics().failed_calls == 3
    fail(breakers[1], 3)
    breakers[1].flush()
    breakers[0].flush()
    assert seen == [(State.CLOSED, State.OPEN)]
    with pytest.raises(CircuitOpenError):
        flaky()
    with pytest.raises(CircuitOpenError):
        asyncio.run(flaky_async())
    answered = breakers[0].decorate(lambda: "real", fallback=lambda: "fallback")
    assert answered() == "fallback"


def test_permit_rejects_bad_durations(fleet) -> None:
    permit = fleet(1)[0].try_acquire()
    assert permit is not None
    with pytest.raises(ValueError, match="duration"):
        permit.on_success(-1.0)
    with pytest.raises(ValueError, match="duration"):
        permit.on_success(float("nan"))
    with pytest.raises(TypeError):
        permit.on_success("fast")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("now", "match"),
    [
        (1.5, r"now must be an int \(nanoseconds\), got 1.5"),
        (-1, r"now must be in \[0, 2\*\*62\] nanoseconds, got -1"),
    ],
)
def test_a_bad_now_is_the_limiters_value_error(fleet, now: object, match) -> None:
    # As the local breakers and the limiters: one ValueError for a bad now.
    breaker = fleet(1)[0]
    breaker.transition_to(State.OPEN)  # OPEN reads the time it is given
    with pytest.raises(ValueError, match=match):
        breaker.retry_after(now=now)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=match):
        breaker.try_acquire(now=now)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"batch_size": 5000}, "batch_size"),
        ({"flush_interval": 0.0}, "flush_interval"),
        ({"flush_interval": float("nan")}, "flush_interval"),
        ({"flush_interval": "1"}, "flush_interval"),
        ({"idle_ttl": 0.5}, "idle_ttl"),
        ({"idle_ttl": float("inf")}, "idle_ttl"),
        ({"max_pending": 8, "batch_size": 16}, "max_pending"),
        ({"timeout": 0}, "timeout"),
        ({"prefix": "a{b}"}, "prefix"),
        ({"config": BreakerConfig(window_size=(1 << 20) + 1)}, "window_size"),
        (
            {"config": BreakerConfig(window_type="time", window_buckets=1001)},
            "window_buckets",
        ),
    ],
)
def test_bad_settings_raise_value_error_naming_the_field(
    redis_node, options: dict[str, object], message: str
) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    try:
        with pytest.raises(ValueError, match=message):
            FleetBreaker("bad", client=client, background=False, **options)  # type: ignore[arg-type]
    finally:
        client.close()


def test_bad_types_raise_type_error(redis_node) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    try:
        with pytest.raises(TypeError, match="client"):
            FleetBreaker("bad", client="localhost:6379")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="config"):
            FleetBreaker("bad", {"window_size": 5}, client=client)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="redis_clock"):
            FleetBreaker("bad", client=client, redis_clock=5)  # type: ignore[arg-type]
    finally:
        client.close()


def test_readme_fleet_breaker_example(
    redis_node, capsys: pytest.CaptureFixture[str]
) -> None:
    # The README's ```py example, as written but for the server's address.
    client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    try:
        config = BreakerConfig(
            failure_rate_threshold=50,
            minimum_calls=20,
            wait_duration=30.0,
            half_open_calls=3,
            max_half_open_duration=60.0,
        )
        with FleetBreaker("payments", config, client=client, timeout=0.1) as breaker:

            @breaker
            def charge(order_id: int) -> str:
                return "charged"

            print(charge(1))
            permit = breaker.try_acquire()  # two-step, as with CircuitBreaker
            if permit is not None:
                permit.on_error(0.2, TimeoutError())
            breaker.flush()  # the flusher thread does this on its own
            print(breaker.state.name, breaker.metrics().calls, breaker.stats().flushes)
    finally:
        client.close()
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "charged"
    state, calls, flushes = out[1].split()
    assert (state, calls) == ("CLOSED", "2")
    assert int(flushes) >= 2


def test_server_time_opens_the_fleet_exactly(make_client) -> None:
    # No injected time: the script reads TIME (16-digit microseconds), and
    # stores it whole (a Lua number formatted by redis.call would round it).
    client = make_client()
    with FleetBreaker(
        fresh_fleet_name(), CONFIG, client=client, background=False, timeout=5.0
    ) as breaker:
        fail(breaker, 6)
        seconds, micros = client.time()
        breaker.flush()
        assert breaker.state == State.OPEN
        opened = client.hget(breaker.keys[0], "opened")
        assert opened is not None
        assert opened.isdigit()
        assert 0 <= int(opened) - (seconds * 1_000_000 + micros) < 5_000_000
        assert 5.0 < breaker.retry_after() <= 10.0
