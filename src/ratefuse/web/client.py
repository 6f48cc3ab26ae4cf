"""httpx transports that guard calls to upstream hosts with a rate limiter
and a circuit breaker, one quota and one breaker per host.

Needs the ``httpx`` extra (``pip install 'ratefuse[httpx]'``)::

    transport = GuardedTransport(
        limiter=KeyedLimiter("10/s"),
        breaker=BreakerConfig(failure_rate_threshold=50),
    )
    client = httpx.Client(transport=transport)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from ratefuse.breaker import BreakerConfig, CircuitBreaker, Permit
from ratefuse.core.errors import RateLimitExceeded
from ratefuse.protocols import is_async, is_keyed
from ratefuse.web.rules import check_limiter

BreakerFactory = Callable[[str], CircuitBreaker]
IsFailure = Callable[[httpx.Response], bool]


def server_error(response: httpx.Response) -> bool:
    """`server_error` is the default failure test: a 5xx status."""
    return response.status_code >= 500


def upstream_of(request: httpx.Request) -> str:
    """`upstream_of` names the host a request goes to: ``scheme://host:port``
    (the default port filled in), the key of its quota and breaker."""
    url = request.url
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.scheme}://{url.host}:{port}"


class _Guard:
    # What the sync and async transports share: everything but the I/O.

    def __init__(
        self,
        limiter: object | None,
        breaker: BreakerConfig | BreakerFactory | None,
        max_wait: float,
        is_failure: IsFailure,
    ) -> None:
        if limiter is not None:
            check_limiter(limiter, None)
            if is_async(limiter):
                raise TypeError(
                    "limiter must decide synchronously (a local limiter), "
                    f"got {limiter!r}"
                )
        if isinstance(max_wait, bool) or not isinstance(max_wait, (int, float)):
            raise ValueError(f"max_wait must be a number of seconds, got {max_wait!r}")
        if not 0 <= max_wait < float("inf"):
            raise ValueError(f"max_wait must be finite and >= 0, got {max_wait!r}")
        if max_wait and not callable(getattr(limiter, "acquire", None)):
            raise ValueError(
                f"max_wait needs a limiter that can wait (acquire), got {limiter!r}"
            )
        if not callable(is_failure):
            raise ValueError(f"is_failure must be callable, got {is_failure!r}")
        if isinstance(breaker, BreakerConfig):
            config = breaker
            breaker = lambda host: CircuitBreaker(host, config)  # noqa: E731
        elif breaker is not None and not callable(breaker):
            raise ValueError(
                f"breaker must be a BreakerConfig, a factory or None, got {breaker!r}"
            )
        self.limiter = limiter
        self.max_wait = float(max_wait)
        self.is_failure = is_failure
        self._keyed = limiter is not None and is_keyed(limiter)
        self._new_breaker = breaker
        self.breakers: dict[str, CircuitBreaker] = {}

    def breaker_for(self, host: str) -> CircuitBreaker | None:
        """`breaker_for` returns the breaker of ``host``, made on first use
        (None without breakers)."""
        if self._new_breaker is None:
            return None
        breaker = self.breakers.get(host)
        if breaker is None:
            # setdefault keeps one breaker if two threads race to make it.
            breaker = self.breakers.setdefault(host, self._new_breaker(host))
        return breaker

    def permit(self, host: str) -> Permit | None:
        """`permit` asks the host's breaker, raising CircuitOpenError."""
        breaker = self.breaker_for(host)
        if breaker is None:
            return None
        permit = breaker.try_acquire()
        if permit is None:
            raise breaker.open_error()
        return permit

    def limiter_args(self, host: str) -> tuple[Any, ...]:
        return (host,) if self._keyed else ()

    def admit_now(self, host: str) -> None:
        decision = self.limiter.decide(*self.limiter_args(host))  # type: ignore[union-attr]
        if not decision.allowed:
            raise RateLimitExceeded(decision)

    def record(
        self,
        permit: Permit | None,
        started: float,
        request: httpx.Request,
        response: httpx.Response,
    ) -> None:
        if permit is None:
            return
        duration = time.perf_counter() - started
        try:
            failed = self.is_failure(response)
        except BaseException:
            # A failure test that raises records nothing, but must not keep
            # the permit (a HALF_OPEN probe slot would stay taken forever).
            permit.release()
            raise
        if failed:
            error = httpx.HTTPStatusError(
                f"upstream answered {response.status_code}",
                request=request,
                response=response,
            )
            permit.on_error(duration, error)
        else:
            permit.on_success(duration)


class GuardedTransport(httpx.BaseTransport):
    """`GuardedTransport` sends through ``transport`` (None: a new
    ``httpx.HTTPTransport()``) once the upstream host's breaker and quota
    let a request go.

    ``limiter``: a KeyedLimiter (one quota per host, keyed by
    :func:`upstream_of`), a Limiter (one quota for all hosts) or None.
    When it denies: with ``max_wait`` 0 (default) RateLimitExceeded is
    raised at once; otherwise the request waits for its turn up to
    ``max_wait`` seconds (the limiter's ``acquire``), and RateLimitExceeded
    is raised at once if the turn is further away. ``breaker``: a
    BreakerConfig (one CircuitBreaker per host, named by its upstream), a
    factory ``host -> CircuitBreaker``, or None; when the host's breaker is
    open, CircuitOpenError is raised before any quota is spent. Failures
    are the responses ``is_failure`` accepts (default: 5xx; recorded as
    ``httpx.HTTPStatusError``) and the exceptions of the inner transport
    (timeouts, connection errors), which propagate; the breaker's
    exception rules classify both. ``breakers`` maps each host seen to
    its breaker. Thread-safe as the limiter and breakers are.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        limiter: object | None = None,
        breaker: BreakerConfig | BreakerFactory | None = None,
        max_wait: float = 0.0,
        is_failure: IsFailure = server_error,
    ) -> None:
        self._guard = _Guard(limiter, breaker, max_wait, is_failure)
        self._transport = httpx.HTTPTransport() if transport is None else transport

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """`breakers` maps each upstream seen to its breaker."""
        return self._guard.breakers

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        guard = self._guard
        host = upstream_of(request)
        permit = guard.permit(host)
        try:
            if guard.limiter is not None:
                if guard.max_wait:
                    guard.limiter.acquire(  # type: ignore[attr-defined]
                        *guard.limiter_args(host), 1, guard.max_wait
                    )
                else:
                    guard.admit_now(host)
        except BaseException:
            if permit is not None:
                permit.release()
            raise
        started = time.perf_counter()
        try:
            response = self._transport.handle_request(request)
        except Exception as exc:
            if permit is not None:
                permit.on_error(time.perf_counter() - started, exc)
            raise
        except BaseException:
            # KeyboardInterrupt, SystemExit: no verdict on the upstream.
            if permit is not None:
                permit.release()
            raise
        guard.record(permit, started, request, response)
        return response

    def close(self) -> None:
        self._transport.close()


class AsyncGuardedTransport(httpx.AsyncBaseTransport):
    """`AsyncGuardedTransport` is :class:`GuardedTransport` for
    ``httpx.AsyncClient``: the inner transport defaults to
    ``httpx.AsyncHTTPTransport()`` and waiting for the quota awaits the
    limiter's ``acquire_async``. Cancellation while sending records
    nothing (the breaker's permit is released)."""

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        limiter: object | None = None,
        breaker: BreakerConfig | BreakerFactory | None = None,
        max_wait: float = 0.0,
        is_failure: IsFailure = server_error,
    ) -> None:
        self._guard = _Guard(limiter, breaker, max_wait, is_failure)
        self._transport = httpx.AsyncHTTPTransport() if transport is None else transport

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """`breakers` maps each upstream seen to its breaker."""
        return self._guard.breakers

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        guard = self._guard
        host = upstream_of(request)
        permit = guard.permit(host)
        try:
            if guard.limiter is not None:
                if guard.max_wait:
                    await guard.limiter.acquire_async(  # type: ignore[attr-defined]
                        *guard.limiter_args(host), 1, guard.max_wait
                    )
                else:
                    guard.admit_now(host)
        except BaseException:
            if permit is not None:
                permit.release()
            raise
        started = time.perf_counter()
        try:
            response = await self._transport.handle_async_request(request)
        except Exception as exc:
            if permit is not None:
                permit.on_error(time.perf_counter() - started, exc)
            raise
        except BaseException:
            if permit is not None:
                permit.release()
            raise
        guard.record(permit, started, request, response)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()
