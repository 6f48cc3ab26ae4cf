"""Adaptive concurrency for the web integrations: the app of a route run
under an :class:`~ratefuse.adaptive.AdaptiveLimiter` (ASGI and WSGI), and
an httpx transport that sends under one per upstream host.

A request takes a slot when it reaches the app (after the route's rate
limits admitted it) and returns it when the response is complete; its
latency feeds the limit. An exception, or a 5xx response, feeds it as a
drop; a cancellation returns the slot without a sample. A request that
finds no slot (after the limiter's ``max_wait``) is answered 503 by the
middlewares and raises AdaptiveLimitFullError in the transports.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from typing import Any, Final

from ratefuse.adaptive import AdaptiveLimiter, AdaptiveLimitFullError, AdaptivePermit

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

OVERLOADED_BODY: Final = b"Service Unavailable\n"
_OVERLOADED_HEADERS: Final = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", b"%d" % len(OVERLOADED_BODY)),
]


def check_concurrency(concurrency: object) -> AdaptiveLimiter | None:
    """`check_concurrency` returns ``concurrency`` if it is an
    AdaptiveLimiter or None, else raises TypeError."""
    if concurrency is not None and not isinstance(concurrency, AdaptiveLimiter):
        raise TypeError(
            f"concurrency must be an AdaptiveLimiter or None, got {concurrency!r}"
        )
    return concurrency


def under_concurrency(side: str, app: Any, limiter: AdaptiveLimiter | None) -> Any:
    """`under_concurrency` is ``app`` (ASGI or WSGI, by ``side``) run under
    ``limiter`` (None: ``app`` itself)."""
    if limiter is None:
        return app
    return asgi_under(app, limiter) if side == "asgi" else wsgi_under(app, limiter)


def asgi_under(app: ASGIApp, limiter: AdaptiveLimiter) -> ASGIApp:
    """`asgi_under` is ``app`` run under ``limiter``: a request without a
    slot is answered 503; a 5xx response or an exception is a drop."""

    async def limited(scope: Scope, receive: Any, send: Any) -> None:
        try:
            permit = await limiter.acquire_async()
        except AdaptiveLimitFullError:
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": _OVERLOADED_HEADERS,
                }
            )
            await send({"type": "http.response.body", "body": OVERLOADED_BODY})
            return
        status = [200]

        def watching(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            return send(message)  # type: ignore[no-any-return]

        try:
            await app(scope, receive, watching)
        except BaseException as exc:
            limiter.finish(permit, exc)
            raise
        _finish_status(permit, status[0])

    return limited


def _finish_status(permit: AdaptivePermit, status: int) -> None:
    if status >= 500:
        permit.drop()
    else:
        permit.release()


def wsgi_under(app: WSGIApp, limiter: AdaptiveLimiter) -> WSGIApp:
    """`wsgi_under` is the WSGI ``app`` run under ``limiter``: the slot is
    held until the server closes the response (PEP 3333), so the latency
    includes the body; a request without a slot is answered 503."""

    def limited(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        try:
            permit = limiter.acquire()
        except AdaptiveLimitFullError:
            start_response(
                "503 Service Unavailable",
                [
                    (name.decode(), value.decode())
                    for name, value in _OVERLOADED_HEADERS
                ],
            )
            return [OVERLOADED_BODY]
        status = [200]

        def watching(
            line: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Any:
            status[0] = int(line.split(" ", 1)[0])
            return start_response(line, headers, exc_info)

        try:
            body = app(environ, watching)
        except BaseException as exc:
            limiter.finish(permit, exc)
            raise
        return _HeldBody(body, permit, limiter, status)

    return limited


class _HeldBody:
    # A WSGI response body that returns its slot when closed, as the
    # server must (or when it fails while iterated).

    def __init__(
        self,
        body: Iterable[bytes],
        permit: AdaptivePermit,
        limiter: AdaptiveLimiter,
        status: list[int],
    ) -> None:
        self._body = body
        self._permit = permit
        self._limiter = limiter
        self._status = status
        self._failure: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._body
        except BaseException as exc:
            self._failure = exc
            raise

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if not self._permit.returned:
                if self._failure is not None:
                    self._limiter.finish(self._permit, self._failure)
                else:
                    _finish_status(self._permit, self._status[0])
