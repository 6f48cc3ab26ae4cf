"""`RateLimitMiddleware`: rate limits for any ASGI app (Starlette, FastAPI,
Quart, Django's ASGI handler), in plain ASGI.

The per-request path is one regular-expression match, one decision per
limit (in order; after a denial the rest are asked with cost 0), and the
headers; routes, policy headers and key readers are
compiled at construction. Non-HTTP scopes (websocket, lifespan) pass
through untouched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ratefuse.ordered import decide_in_order_async
from ratefuse.web.enforce import (
    DEFAULT_DENIED_BODY,
    MiddlewareBase,
    Outcome,
    RoutePolicy,
    judge,
    judge_one,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["DEFAULT_DENIED_BODY", "RateLimitMiddleware"]


class RateLimitMiddleware(MiddlewareBase[ASGIApp, Scope]):
    """`RateLimitMiddleware` wraps ``app`` and applies the first of
    ``routes`` whose pattern matches each HTTP request.

    A route's limits are tried in the order listed: each takes its cost
    until one denies, and the ones after it are only asked (cost 0, which
    consumes nothing) so that the headers describe them all. List the most
    specific limit (per key) first and the shared ones after it: a client
    denied by its own limit then does not use up the quota everyone shares
    (the limits before the one that denies have taken their cost).

    A request every limit admits goes to ``app``; otherwise it is answered
    429 with ``Retry-After`` (whole seconds, rounded up: the longest wait
    among the denial and the cost-0 verdicts after it; absent when the cost
    can never be admitted), the rate-limit headers and ``denied_body`` as
    text/plain. ``headers``: "draft" (RateLimit-Policy and RateLimit, the
    default), "legacy" (X-RateLimit-*), "both" or "none". ``headers_on``:
    "denied" (the default: the 429s, and in shadow mode the responses it
    would have denied) or "all" (every limited response; the server then
    writes two more headers per response, which costs it more than the
    decision does). Requests on ``exempt_paths`` (exact
    paths) or for which ``exempt(scope)`` is true are not limited, nor are
    those no route matches. ``shadow`` counts as enforcing would and sets
    the rate-limit headers on the responses it would have denied (on all
    with ``headers_on="all"``), but denies nothing, and sends no
    ``Retry-After`` on the responses it lets through. ``on_denied(scope,
    outcome)`` is called for each denial (also in shadow mode), e.g. to log
    it. ``registry`` resolves limiters given by name
    (``registry.limiter(name)``), once, at construction. ``deadline_from``
    (None, the default: off), a header name such as "x-request-timeout"
    (seconds, or gRPC's "250m") or a function of the request, runs the app
    under ``ratefuse.deadline`` of what it reads (ratefuse.web.deadlines).

    Async limiters (``AsyncRedisLimiter``) are awaited; a sync
    ``RedisLimiter`` blocks the event loop for its round trip.
    """

    side = "asgi"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        policy = self._find(scope["method"], scope["path"])
        if policy is None or (self._exempt is not None and self._exempt(scope)):
            return await self.app(scope, receive, send)
        app: ASGIApp = policy.app
        limit = policy.single
        if limit is not None:
            tracked = limit.tracked
            if tracked is not None and tracked.rates is not limit.rates_seen:
                policy.refresh()
            decision = limit.ask(scope, limit.cost)
            if decision is not None and decision.allowed:
                # Admitted: straight to the app, with the two headers if
                # asked for on every response.
                if not policy.headers_on_admitted:
                    return await app(scope, receive, send)
                extra = [*policy.static_raw, limit.raw_rate_header(decision)]
                return await app(scope, receive, _with_headers(send, extra))
            outcome = judge_one(limit, decision)
        else:
            policy.refresh()
            outcome = judge(policy, await decide_in_order_async(policy.limits, scope))
        added = self._extra_headers(scope, policy, outcome, policy.raw_headers)
        if added is None:
            return await self._deny(policy, outcome, send)
        if not added:  # nothing to add (headers="none", or a 200)
            return await app(scope, receive, send)
        return await app(scope, receive, _with_headers(send, added))

    async def _deny(self, policy: RoutePolicy, outcome: Outcome, send: Send) -> None:
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", b"%d" % self._denied_length),
            *policy.raw_headers(outcome),
        ]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": self._denied_body})


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    # The app's send, adding ``extra`` to the response's headers. A plain
    # function returning send's awaitable: no coroutine of its own per
    # message, on the path of every response. The start message is copied,
    # not changed: an app may send one constant message for every response,
    # which would otherwise gather every request's headers.
    def send_with_headers(message: Message) -> Awaitable[None]:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", ()), *extra]}
        return send(message)

    return send_with_headers
