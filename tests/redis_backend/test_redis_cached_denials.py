"""A denial answered by the deny cache means what the fleet's denial meant,
on both twins of the lease table: its reset_after is the time until the
quota is whole (as the script reports it), not its retry_after. The
``RateLimit: t=`` header of a 429 is built from reset_after, and used to
say t=10 when Redis answered and t=1 when the cache did, for one state."""

from __future__ import annotations

import math

import httpx
import pytest
import redis

import ratefuse.redis._leasing as leasing
from ratefuse.redis import RedisLimiter
from ratefuse.web import Limit, RateLimitWSGIMiddleware, Route, header
from web_support import serve_wsgi


@pytest.fixture
def lease_table(impl, monkeypatch):
    """`lease_table` makes the limiters built in the test use ``impl``'s
    lease table (deny cache and leases)."""
    monkeypatch.setattr(leasing, "_core", impl.module("core._lease"))
    return impl


@pytest.mark.parametrize("algorithm", ["gcra", "fixed_window"])
def test_a_cached_denial_reports_the_fleets_reset_after(
    lease_table, client, fresh_name, algorithm
) -> None:
    local_ns = [10**15]  # the local clock stands still: no time passes
    limiter = RedisLimiter(
        "10/100s",
        algorithm,
        backend=client,
        name=fresh_name(),
        clock=lambda: local_ns[0],
    )
    assert all(limiter.decide("k").allowed for _ in range(10))
    fleet = limiter.decide("k")  # a miss: Redis denies, the cache learns
    cached = limiter.decide("k")
    assert limiter.stats().deny_cache_hits == 1
    assert not fleet.allowed
    assert not cached.allowed
    assert cached.retry_after == fleet.retry_after
    assert cached.reset_after == fleet.reset_after
    if algorithm == "gcra":  # retry_after: one unit's 10 s; reset: all 100 s
        assert math.ceil(cached.retry_after) == 10
        assert math.ceil(cached.reset_after) == 100
    # Half the wait passes locally: the cache still answers, with what is
    # left of both.
    local_ns[0] += round(fleet.retry_after / 2 * 1e9)
    later = limiter.decide("k")
    assert limiter.stats().deny_cache_hits == 2
    assert later.reset_after == pytest.approx(fleet.reset_after - fleet.retry_after / 2)
    assert later.reset_after >= later.retry_after
    # A reset forgets it with the key.
    limiter.reset("k")
    assert limiter.decide("k").allowed
    limiter.close()


def test_every_429_of_one_state_carries_the_same_t(
    lease_table, redis_node, fresh_name
) -> None:
    client = redis.Redis(host="127.0.0.1", port=redis_node.port)
    limiter = RedisLimiter("10/100s", backend=client, name=fresh_name())
    app = RateLimitWSGIMiddleware(
        lambda environ, start_response: [
            start_response("200 OK", [("Content-Type", "text/plain")]) and b"",
            b"hello",
        ][1:],
        [Route("/hello", Limit(limiter, key=header("x-tenant")))],
    )
    try:
        with serve_wsgi(app) as url, httpx.Client(base_url=url) as http:
            for _ in range(10):
                assert http.get("/hello", headers={"x-tenant": "a"}).is_success
            denials = [http.get("/hello", headers={"x-tenant": "a"}) for _ in range(6)]
    finally:
        limiter.close()
        client.close()
    assert {response.status_code for response in denials} == {429}
    assert limiter.stats().deny_cache_hits >= 4
    assert {response.headers["ratelimit"] for response in denials} == {
        '"default";r=0;t=100'
    }


def test_a_leased_admission_reports_the_fleets_reset_after(
    lease_table, client, fresh_name
) -> None:
    # A lease of k units leaves the fleet's bucket k units further from
    # whole; the units spent locally report that, not 0 ("whole now").
    name = fresh_name()
    leased = RedisLimiter("10/100s", backend=client, name=name, lease=True)
    exact = RedisLimiter("10/100s", backend=client, name=name, deny_cache=False)
    try:
        first = leased.decide("k")
        local = leased.decide("k")
        assert leased.stats().lease_hits >= 1
        fleet = exact.decide("k", 0)
        assert first.allowed
        assert local.allowed
        assert fleet.reset_after >= 10
        # At least the one unit each took (10 s), at most the fleet's now
        # (a refill in the background may have leased more since).
        for decision in (first, local):
            assert 9 < decision.reset_after <= fleet.reset_after + 0.01
    finally:
        leased.close()
        exact.close()
