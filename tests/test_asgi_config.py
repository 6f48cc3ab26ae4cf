"""Configuration of the middlewares: bad input refused at construction
with the field and the value named, route matching order, key functions,
and the header edge cases (a cost that can never be admitted)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratefuse import KeyedLimiter, Limiter, Rate
from ratefuse.rates import build_specs
from ratefuse.web import (
    CLIENT_ADDRESS,
    PATH,
    Limit,
    RateLimitMiddleware,
    RateLimitWSGIMiddleware,
    Route,
    forwarded_for,
    header,
    user,
)
from ratefuse.web.enforce import CompiledLimit, RoutePolicy, judge
from ratefuse.web.rules import Router


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def call(
    app: Any, path: str, headers: list[tuple[bytes, bytes]] = ()
) -> tuple[int, dict[bytes, bytes]]:
    """`call` sends one request through ``app`` in process; returns the
    status and headers the app sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "headers": list(headers),
        "client": ("10.1.2.3", 5555),
    }
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], dict(sent[0]["headers"])


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (
            lambda: Limit(KeyedLimiter("1/s"), cost=-1),
            ValueError,
            "cost must be an int >= 0, got -1",
        ),
        (
            lambda: Limit(KeyedLimiter("1/s"), cost=1.5),
            ValueError,
            "cost must be an int >= 0, got 1.5",
        ),
        (
            lambda: Limit(KeyedLimiter("1/s"), name='a"b'),
            ValueError,
            "name must be printable ASCII",
        ),
        (
            lambda: Limit(KeyedLimiter("1/s"), name=""),
            ValueError,
            "name must be printable ASCII",
        ),
        (
            lambda: Limit(KeyedLimiter("1/s"), key=3),
            ValueError,
            "key must be a KeyFunction or callable, got 3",
        ),
        (lambda: Limit(object()), TypeError, "limiter must have a decide method"),
        (
            lambda: Limit(Limiter("1/s"), key=CLIENT_ADDRESS),
            ValueError,
            "key is for keyed limiters",
        ),
        (
            lambda: Route("/a", match="fuzzy"),
            ValueError,
            "match must be one of .*, got 'fuzzy'",
        ),
        (lambda: Route("(", match="regex"), ValueError, r"pattern '\(' is not a regex"),
        (
            lambda: Route("(?i)/api", match="regex"),
            ValueError,
            r"pattern '\(\?i\)/api' is not a regex: global flags",
        ),
        (lambda: Route(b"/a"), ValueError, "pattern must be a str, got b'/a'"),
        (lambda: Route("/a", [object()]), ValueError, "limits must be Limit objects"),
        (
            lambda: Route("/a", methods="GET"),
            ValueError,
            "methods must be a sequence of method names, got 'GET'",
        ),
        (
            lambda: Route(
                "/a", [Limit(KeyedLimiter("1/s")), Limit(KeyedLimiter("2/s"))]
            ),
            ValueError,
            "limit names must be unique",
        ),
        (
            lambda: header(""),
            ValueError,
            "header name must be a non-empty ASCII str, got ''",
        ),
        (lambda: forwarded_for(0), ValueError, "trusted_proxies must be >= 1, got 0"),
        (
            lambda: forwarded_for(True),
            ValueError,
            "trusted_proxies must be an int, got True",
        ),
        (
            lambda: RateLimitMiddleware(ok_app, [], headers="all"),
            ValueError,
            "headers must be one of .*, got 'all'",
        ),
        (
            lambda: RateLimitMiddleware(ok_app, [], headers_on="admitted"),
            ValueError,
            "headers_on must be one of .*, got 'admitted'",
        ),
        (
            lambda: RateLimitWSGIMiddleware(ok_app, [], headers_on=None),
            ValueError,
            "headers_on must be one of .*, got None",
        ),
        (
            lambda: RateLimitMiddleware(ok_app, [], exempt=1),
            ValueError,
            "exempt must be callable or None, got 1",
        ),
        (
            lambda: RateLimitMiddleware(ok_app, [], on_denied="x"),
            ValueError,
            "on_denied must be callable or None, got 'x'",
        ),
        (
            lambda: RateLimitMiddleware(ok_app, [], denied_body="no"),
            ValueError,
            "denied_body must be bytes, got 'no'",
        ),
        (
            lambda: RateLimitMiddleware(ok_app, [], exempt_paths="/health"),
            ValueError,
            "exempt_paths must be a sequence",
        ),
        (
            lambda: RateLimitMiddleware(ok_app, ["/a"]),
            ValueError,
            "routes must be Route objects, got '/a'",
        ),
        (
            lambda: RateLimitMiddleware(ok_app, [Route("/a", Limit("api"))]),
            ValueError,
            "'api' is a registry name but no registry",
        ),
        (
            lambda: RateLimitWSGIMiddleware(
                ok_app,
                [Route("/a", Limit(KeyedLimiter("1/s"), key=lambda e: None))],
                headers="x",
            ),
            ValueError,
            "headers must be one of",
        ),
    ],
)
def test_bad_configuration_is_refused(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()


def test_first_matching_route_wins_in_declaration_order() -> None:
    routes = [
        Route("/api/admin/**"),
        Route("/api/*/items", methods=["post"]),
        Route("/api/", match="prefix"),
        Route(r"/(?P<id>\d+)", match="regex"),  # a named group of its own
    ]
    router = Router(routes, ["admin", "post-items", "api", "digits"])
    assert router.find("GET", "/api/admin/x/y") == "admin"
    assert router.find("POST", "/api/v1/items") == "post-items"
    assert router.find("GET", "/api/v1/items") == "api"
    assert router.find("POST", "/api/v1/x/items") == "api"  # * stays in a segment
    assert router.find("GET", "/123") == "digits"
    assert router.find("GET", "/12a") is None
    assert router.find("GET", "/ap") is None
    assert Router([], []).find("GET", "/") is None


def test_key_functions_read_asgi_and_wsgi_alike() -> None:
    scope = {
        "client": ("10.0.0.9", 1),
        "path": "/p",
        "headers": [
            (b"x-api-key", b"k\xe9y"),
            (b"x-forwarded-for", b"1.1.1.1, 2.2.2.2"),
        ],
    }
    environ = {
        "REMOTE_ADDR": "10.0.0.9",
        "PATH_INFO": "/p",
        "HTTP_X_API_KEY": "k\xe9y",
        "HTTP_X_FORWARDED_FOR": "1.1.1.1, 2.2.2.2",
    }
    for key, expected in [
        (CLIENT_ADDRESS, "10.0.0.9"),
        (header("X-Api-Key"), "k\xe9y"),
        (header("x-missing"), "10.0.0.9"),
        (header("x-missing", fallback=None), None),
        (forwarded_for(1), "2.2.2.2"),
        (forwarded_for(2), "1.1.1.1"),
        (forwarded_for(3), "10.0.0.9"),  # fewer hops than proxies: fallback
        (user(), "10.0.0.9"),  # anonymous
    ]:
        assert key.asgi(scope) == expected, key
        assert key.wsgi(environ) == expected, key
    assert CLIENT_ADDRESS.asgi({"client": None}) == "unknown"


def test_a_cost_that_never_fits_is_denied_without_retry_after(impl) -> None:
    rate = Rate(2, 10.0)
    core = impl.module("engine._keyed").KeyedLimiterCore(
        build_specs([rate], "gcra"), 100
    )
    app = RateLimitMiddleware(ok_app, [Route("/", Limit(core, cost=3, rates=[rate]))])
    status, headers = call(app, "/")
    assert status == 429
    assert b"retry-after" not in headers
    assert headers[b"ratelimit"].startswith(b'"default";r=2')


def test_multi_rate_limiter_names_each_rate(impl) -> None:
    rates = [Rate(2, 1.0), Rate(3, 60.0)]
    core = impl.module("engine._subject").LimiterCore(
        build_specs(rates, "gcra"), lambda: 10**12
    )
    app = RateLimitMiddleware(
        ok_app, [Route("/", Limit(core, rates=rates, name="api"))], headers_on="all"
    )
    status, headers = call(app, "/")
    assert status == 200
    assert headers[b"ratelimit-policy"] == b'"api";q=2;w=1, "api-2";q=3;w=60'
    call(app, "/")
    status, headers = call(app, "/")  # 2/s is spent: the per-second rate reports
    assert status == 429
    assert headers[b"ratelimit"].startswith(b'"api";r=0')
    assert headers[b"retry-after"] == b"1"


def test_key_without_value_skips_the_limit() -> None:
    limiter = KeyedLimiter("1/minute")
    route = Route("/", Limit(limiter, key=header("x-tenant", fallback=None)))
    app = RateLimitMiddleware(ok_app, [route])
    assert [call(app, "/")[0] for _ in range(3)] == [200] * 3
    tenant = [(b"x-tenant", b"t")]
    assert [call(app, "/", tenant)[0] for _ in range(2)] == [200, 429]


decisions = st.lists(
    st.none()
    | st.tuples(
        st.booleans(),
        st.integers(0, 10**6),
        st.floats(0.0, 10**6, allow_nan=False) | st.just(math.inf),
        st.floats(0.0, 10**6, allow_nan=False),
    ),
    min_size=1,
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(trace=decisions)
def test_judge_denies_iff_a_limit_denies_and_reports_the_longest_retry(
    impl, trace
) -> None:
    # The longest retry among the denial and the (cost-0) verdicts after it.
    decision_type = impl.module("engine._subject").Decision
    limits = [
        Limit(KeyedLimiter("5/s"), name=f"l{index}") for index in range(len(trace))
    ]
    policy = RoutePolicy(
        [CompiledLimit(limit, "asgi", None) for limit in limits], "draft", "all"
    )
    # An admitting verdict may report a finite wait too (a cost-0 ask that
    # does): it counts after the first denial only.
    given_decisions = [
        None
        if entry is None
        else decision_type(
            entry[0],
            entry[1],
            (entry[2] if entry[2] < math.inf else 0.0) if entry[0] else entry[2],
            entry[3],
            5,
        )
        for entry in trace
    ]
    outcome = judge(policy, given_decisions)
    present = [d for d in given_decisions if d is not None]
    first = next((i for i, d in enumerate(present) if not d.allowed), None)
    assert outcome.denied == (first is not None)
    if first is not None:
        longest = max(d.retry_after for d in present[first:])
        if longest < math.inf:
            assert outcome.retry_after == math.ceil(longest)
        else:
            assert outcome.retry_after is None
    else:
        assert outcome.retry_after is None
    members = [d for d in given_decisions if d is not None]
    if members:
        items = outcome.rate.split(", ")
        assert len(items) == len(members)
        for item, decision in zip(items, members, strict=True):
            assert f";r={decision.remaining}" in item
            assert item.endswith(f";t={math.ceil(decision.reset_after)}")
    else:
        assert outcome.rate is None


class Scripted:
    """`Scripted` is a keyed limiter answering ``taken`` when asked a cost
    and ``asked`` when asked cost 0, recording every (name, cost) asked."""

    def __init__(self, name: str, taken: Any, asked: Any, log: list[Any]) -> None:
        self.name = name
        self.taken = taken
        self.asked = asked
        self.log = log

    def decide(self, key: object, cost: int = 1) -> Any:
        self.log.append((self.name, cost))
        return self.taken if cost else self.asked


class AsyncScripted(Scripted):
    async def decide(self, key: object, cost: int = 1) -> Any:  # type: ignore[override]
        await asyncio.sleep(0)
        return Scripted.decide(self, key, cost)


def call_wsgi(app: Any, path: str) -> tuple[int, dict[str, str]]:
    """`call_wsgi` is `call` for a WSGI app: status and lower-case headers."""
    started: list[Any] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        started.append((status, headers))

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": "10.1.2.3"}
    b"".join(app(environ, start_response))
    status, headers = started[0]
    return int(status.split()[0]), {name.lower(): value for name, value in headers}


def ok_wsgi(environ: Any, start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.mark.parametrize("side", ["asgi", "wsgi"])
def test_limits_after_a_denial_are_asked_with_cost_0(impl, side) -> None:
    decision = impl.module("engine._subject").Decision
    admit = decision(True, 3, 0.0, 1.0, 5)
    log: list[Any] = []
    last = AsyncScripted if side == "asgi" else Scripted
    limits = [
        # (name, cost, verdict when taking, verdict when asked at cost 0)
        Limit(Scripted("first", admit, admit, log), cost=2, name="first"),
        Limit(
            Scripted("second", decision(False, 0, 4.0, 9.0, 5), admit, log),
            name="second",
        ),
        # A cost-0 verdict that reports a longer wait sets Retry-After.
        Limit(
            Scripted("third", admit, decision(False, 0, 6.5, 9.0, 5), log),
            cost=3,
            name="third",
        ),
        Limit(last("fourth", admit, admit, log), name="fourth"),
    ]
    if side == "asgi":
        app: Any = RateLimitMiddleware(ok_app, [Route("/", limits)])
        status, raw = call(app, "/")
        headers = {name.decode(): value.decode() for name, value in raw.items()}
    else:
        app = RateLimitWSGIMiddleware(ok_wsgi, [Route("/", limits)])
        status, headers = call_wsgi(app, "/")
    assert status == 429
    assert log == [("first", 2), ("second", 1), ("third", 0), ("fourth", 0)]
    assert headers["retry-after"] == "7"
    assert headers["ratelimit"] == (
        '"first";r=3;t=1, "second";r=0;t=9, "third";r=0;t=9, "fourth";r=3;t=1'
    )
    # Every limit admits: each takes its cost.
    log.clear()
    for limit in limits:
        limit.limiter.taken = admit  # type: ignore[attr-defined]
    status = call(app, "/")[0] if side == "asgi" else call_wsgi(app, "/")[0]
    assert status == 200
    assert log == [("first", 2), ("second", 1), ("third", 3), ("fourth", 1)]


def test_path_keys_a_non_ascii_path_alike_under_asgi_and_wsgi() -> None:
    # PEP 3333 hands WSGI the path's UTF-8 bytes decoded as latin-1; an ASGI
    # app and a WSGI app sharing a quota by path must key it the same.
    path = "/caf\u00e9/\u6771\u4eac"
    environ = {"PATH_INFO": path.encode("utf-8").decode("latin-1")}
    assert PATH.wsgi(environ) == PATH.asgi({"path": path}) == path
    assert PATH.wsgi({"PATH_INFO": "/plain"}) == "/plain"
