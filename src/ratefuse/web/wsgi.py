"""`RateLimitWSGIMiddleware`: rate limits for any WSGI app (Flask, Django,
Pyramid), the twin of the ASGI middleware with sync limiters only."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ratefuse.web.asgi import DEFAULT_DENIED_BODY
from ratefuse.web.enforce import (
    Outcome,
    check_options,
    compile_routes,
    decide_in_order,
    judge,
)
from ratefuse.web.headers import (
    DEFAULT_HEADER_MODE,
    DEFAULT_HEADERS_ON,
    HeaderMode,
    HeadersOn,
)
from ratefuse.web.keys import wsgi_path
from ratefuse.web.rules import Route

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]


class RateLimitWSGIMiddleware:
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

    def __init__(
        self,
        app: WSGIApp,
        routes: Sequence[Route],
        *,
        exempt_paths: Sequence[str] = (),
        exempt: Callable[[Environ], bool] | None = None,
        shadow: bool = False,
        headers: HeaderMode = DEFAULT_HEADER_MODE,
        headers_on: HeadersOn = DEFAULT_HEADERS_ON,
        on_denied: Callable[[Environ, Outcome], None] | None = None,
        denied_body: bytes = DEFAULT_DENIED_BODY,
        registry: object | None = None,
    ) -> None:
        check_options(exempt, on_denied, denied_body)
        self.app = app
        self._router = compile_routes(
            routes, exempt_paths, "wsgi", headers, headers_on, registry
        )
        self._find = self._router.find
        self._exempt = exempt
        self._shadow = bool(shadow)
        self._on_denied = on_denied
        self._denied_body = denied_body

    def __call__(
        self, environ: Environ, start_response: StartResponse
    ) -> Iterable[bytes]:
        policy = self._find(environ.get("REQUEST_METHOD", ""), wsgi_path(environ))
        if policy is None or (self._exempt is not None and self._exempt(environ)):
            return self.app(environ, start_response)
        policy.refresh()
        outcome = judge(policy, decide_in_order(policy, environ))
        if outcome.denied:
            if self._on_denied is not None:
                self._on_denied(environ, outcome)
            if not self._shadow:
                start_response(
                    "429 Too Many Requests",
                    [
                        ("Content-Type", "text/plain; charset=utf-8"),
                        ("Content-Length", str(len(self._denied_body))),
                        *policy.headers(outcome),
                    ],
                )
                return [self._denied_body]
            # Shadow mode: let it through, without Retry-After.
            extra = policy.headers(outcome, retry=False)
        elif policy.headers_on_admitted:
            extra = policy.headers(outcome)
        else:
            extra = []
        if not extra:  # nothing to add (headers="none", or a 200)
            return self.app(environ, start_response)

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            return start_response(status, [*headers, *extra], exc_info)

        return self.app(environ, start_with_headers)
