"""`RateLimitWSGIMiddleware`: rate limits for any WSGI app (Flask, Django,
Pyramid), the twin of the ASGI middleware with sync limiters only."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ratefuse.ordered import decide_in_order
from ratefuse.web.enforce import MiddlewareBase, judge
from ratefuse.web.keys import wsgi_path

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class RateLimitWSGIMiddleware(MiddlewareBase[WSGIApp, Environ]):
    """`RateLimitWSGIMiddleware` wraps the WSGI ``app`` like
    :class:`ratefuse.web.RateLimitMiddleware` wraps an ASGI one: same
    routes, limits, headers (``headers``, and ``headers_on``: on the 429s
    by default, or "all"), exemptions (``exempt(environ)``), shadow mode
    (no ``Retry-After`` on the responses it lets through) and 429 answers.
    A route's limits are tried in the order listed, each taking its cost
    until one denies, the rest only asked (cost 0), so list the most
    specific (per key) first and the shared ones after it: a client denied
    by its own limit does not use up the others' quota. Limiters must be
    sync (Limiter, KeyedLimiter, RedisLimiter); an async one is refused at
    construction (TypeError). Thread-safe as the limiters are.
    """

    side = "wsgi"

    def __call__(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        policy = self._find(environ.get("REQUEST_METHOD", ""), wsgi_path(environ))
        if policy is None or (self._exempt is not None and self._exempt(environ)):
            return self.app(environ, start_response)
        app: WSGIApp = policy.app
        policy.refresh()
        outcome = judge(policy, decide_in_order(policy.limits, environ))
        extra = self._extra_headers(environ, policy, outcome, policy.headers)
        if extra is None:
            start_response(
                "429 Too Many Requests",
                [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(self._denied_length)),
                    *policy.headers(outcome),
                ],
            )
            return [self._denied_body]
        if not extra:  # nothing to add (headers="none", or a 200)
            return app(environ, start_response)

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            return start_response(status, [*headers, *extra], exc_info)

        return app(environ, start_with_headers)
