"""AdaptiveThrottle and ThrottledBreaker on both cores: configuration
errors, the formula through the public object, stats and metric samples,
and every breaker form with a throttle in front."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from breaker_support import ManualClock, make_breaker
from ratefuse import BreakerConfig, BreakerState, CircuitOpenError
from ratefuse.throttle import (
    AdaptiveThrottle,
    ThrottleConfig,
    ThrottledError,
)
from ratefuse.throttled_breaker import ThrottledBreaker

SECOND = 1_000_000_000


def throttle_on(impl: Any, config: ThrottleConfig | None = None, **options: Any):
    """`throttle_on` is an AdaptiveThrottle deciding with ``impl``'s core."""
    throttle = AdaptiveThrottle(config, **options)
    config = throttle.config
    throttle._core = impl.module("core._throttle").ThrottleCore(
        config.buckets, config.bucket_ns, config.k_milli
    )
    return throttle


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"k": 0.5}, "k must be between 1 and 1000, got 0.5"),
        ({"k": float("nan")}, "k must be between"),
        ({"k": "2"}, "k must be a number, got '2'"),
        ({"k": True}, "k must be a number, got True"),
        ({"window": 0.0}, "window must be finite and > 0, got 0.0"),
        ({"window": float("inf")}, "window must be finite and > 0, got inf"),
        ({"window": None}, "window must be seconds, got None"),
        ({"buckets": 0}, "buckets must be between 1 and 100000, got 0"),
        ({"buckets": 2.0}, "buckets must be an int, got 2.0"),
        ({"window": 1e-9, "buckets": 2}, "window / buckets must be at least 1 ns"),
    ],
)
def test_bad_configs_name_the_field_and_value(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        ThrottleConfig(**options)


def test_bad_arguments_raise_type_error() -> None:
    with pytest.raises(TypeError, match="config must be a ThrottleConfig"):
        AdaptiveThrottle({"k": 2})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="random must be callable or None, got 3"):
        AdaptiveThrottle(random=3)  # type: ignore[arg-type]


def test_the_refusal_rate_follows_the_formula(impl: Any) -> None:
    # 30 requests of which 5 accepted, K = 2: p = (30 - 10) / 31 at first;
    # every refusal adds a request without an accept, so p creeps up.
    clock = ManualClock()
    throttle = throttle_on(
        impl,
        ThrottleConfig(k=2.0, window=10.0),
        clock=clock,
        random=random.Random(7).random,
    )
    for accepted in [True] * 5 + [False] * 25:
        throttle.record(accepted)
    assert throttle.probability() == pytest.approx(20 / 31)
    refused = sum(not throttle.admit() for _ in range(1000))
    stats = throttle.stats()
    assert stats.requests == 30 + refused
    assert stats.accepts == 5
    assert (stats.admitted, stats.rejected) == (1000 - refused, refused)
    assert (stats.accepted, stats.refused) == (5, 25)
    assert 0.9 < refused / 1000 < 1.0  # p goes from 0.65 towards 1
    assert stats.probability == pytest.approx(
        (stats.requests - 10) / (stats.requests + 1)
    )


def test_a_healthy_upstream_is_never_throttled_and_old_failures_expire(
    impl: Any,
) -> None:
    clock = ManualClock()
    throttle = throttle_on(impl, ThrottleConfig(window=10.0, buckets=10), clock=clock)
    for _ in range(200):
        assert throttle.admit()
        throttle.record(True)
    for _ in range(100):
        throttle.record(False)
    assert throttle.probability() == 0.0  # 300 requests, 200 accepts, K = 2
    for _ in range(100):
        throttle.record(False)
    assert throttle.probability() == pytest.approx(0.0, abs=1e-12)  # 400 - 400
    throttle.record(False)
    assert throttle.probability() > 0.0
    clock.advance(10.0)  # the window moved past every outcome
    assert throttle.stats().requests == 0
    assert throttle.probability() == 0.0


def test_admit_or_raise_and_reset(impl: Any) -> None:
    throttle = throttle_on(impl, clock=ManualClock(), random=lambda: 0.0, name="api")
    throttle.admit_or_raise()
    throttle.record(False)
    with pytest.raises(ThrottledError) as raised:
        throttle.admit_or_raise()
    assert isinstance(raised.value, CircuitOpenError)
    assert (raised.value.name, raised.value.retry_after) == ("api", 0.0)
    assert str(raised.value) == "adaptive throttle 'api' refused the request locally"
    throttle.reset()
    throttle.admit_or_raise()
    assert throttle.stats().rejected == 1  # counters survive reset


def test_metric_samples_report_counts_and_probability(impl: Any) -> None:
    throttle = throttle_on(impl, clock=ManualClock(), random=lambda: 0.0)
    throttle.record(False)
    assert not throttle.admit()
    samples = {
        (family, tuple(labels.items())): value
        for family, _, _, labels, value in throttle.metric_samples()
    }
    assert samples[("throttle_requests", (("result", "rejected"),))] == 1
    assert samples[("throttle_requests", (("result", "refused"),))] == 1
    assert samples[("throttle_requests", (("result", "admitted"),))] == 0
    assert samples[("throttle_reject_probability", ())] == pytest.approx(2 / 3)


def throttled_breaker(impl: Any, draws: list[float], **options: Any):
    clock = ManualClock()
    breaker = make_breaker(
        impl,
        BreakerConfig(window_size=4, minimum_calls=4, failure_rate_threshold=100),
        clock=clock,
        **options,
    )
    throttle = throttle_on(impl, clock=clock, random=iter(draws).__next__)
    return ThrottledBreaker(breaker, throttle), breaker, throttle


def test_the_throttle_refuses_before_the_breaker_trips(impl: Any) -> None:
    guarded, breaker, throttle = throttled_breaker(impl, [0.99, 0.99, 0.0, 0.99])

    @guarded
    def fail() -> None:
        raise OSError("upstream refused")

    for _ in range(2):
        with pytest.raises(OSError, match="upstream refused"):
            fail()
    with pytest.raises(ThrottledError):  # draw 0.0 < p = 2/3
        fail()
    with pytest.raises(OSError, match="upstream refused"):
        fail()
    assert breaker.state == BreakerState.CLOSED  # it saw 3 failures of 4 needed
    assert throttle.stats().requests == 4
    assert throttle.stats().rejected == 1


def test_every_form_reports_to_both(impl: Any) -> None:
    guarded, breaker, throttle = throttled_breaker(
        impl, [0.5] * 8, fallback=lambda *args: "fallback"
    )
    assert guarded.call(lambda: 1) == 1
    with guarded.guard():
        pass
    with pytest.raises(KeyError), guarded.guard():
        raise KeyError("x")

    @guarded.decorate
    async def fetch() -> int:
        return 2

    assert asyncio.run(fetch()) == 2
    permit = guarded.try_acquire()
    assert permit is not None
    permit.release()  # no verdict
    assert throttle.stats().accepted == 3
    assert throttle.stats().refused == 1
    assert breaker.metrics().calls == 4
    # A throttled call takes the breaker's fallback.
    for _ in range(30):
        throttle.record(False)
    assert guarded.call(lambda: 1) == "fallback"
    assert guarded.try_acquire() is None


def test_accepts_predicates_classify_outcomes(impl: Any) -> None:
    guarded, _, throttle = throttled_breaker(impl, [0.99] * 4)
    guarded = ThrottledBreaker(
        guarded.breaker,
        throttle,
        accepts_error=lambda exc: isinstance(exc, KeyError),
        accepts_result=lambda result: result != 503,
    )
    permit = guarded.try_acquire()
    assert permit is not None
    permit.on_result(0.0, 503)
    permit = guarded.try_acquire()
    assert permit is not None
    permit.on_error(0.0, KeyError("a caller's bug"))
    assert (throttle.stats().accepted, throttle.stats().refused) == (1, 1)


def test_throttled_breaker_arguments_are_checked(impl: Any) -> None:
    throttle = throttle_on(impl)
    with pytest.raises(TypeError, match="breaker must be a breaker"):
        ThrottledBreaker(object(), throttle)

    class AsyncBreaker:
        async def permit_or_error(self) -> None: ...

    with pytest.raises(TypeError, match="breaker must decide synchronously"):
        ThrottledBreaker(AsyncBreaker(), throttle)
    breaker = make_breaker(impl, BreakerConfig())
    with pytest.raises(TypeError, match="throttle must be an AdaptiveThrottle"):
        ThrottledBreaker(breaker, object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="accepts_error must be callable"):
        ThrottledBreaker(breaker, throttle, accepts_error=1)  # type: ignore[arg-type]
    assert guarded_name(ThrottledBreaker(breaker, throttle)) == breaker.name


def guarded_name(guarded: ThrottledBreaker) -> str:
    return guarded.name


def test_prometheus_reports_a_throttle_added_as_a_limiter(impl: Any) -> None:
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from ratefuse.metrics import RatefuseCollector

    throttle = throttle_on(impl, clock=ManualClock(), random=lambda: 0.0)
    collector = RatefuseCollector()
    collector.add_limiter("upstream", throttle)
    prometheus = CollectorRegistry()
    prometheus.register(collector)
    throttle.record(False)
    assert not throttle.admit()
    text = generate_latest(prometheus).decode()
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    rejected = (("limiter", "upstream"), ("result", "rejected"))
    assert samples[("ratefuse_throttle_requests_total", rejected)] == 1
    assert samples[
        ("ratefuse_throttle_reject_probability", (("limiter", "upstream"),))
    ] == pytest.approx(2 / 3)
