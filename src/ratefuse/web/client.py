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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import httpx

from ratefuse.breaker import BreakerConfig, CircuitBreaker, Permit
from ratefuse.core.errors import RateLimitExceeded
from ratefuse.ordered import check_limiter
from ratefuse.protocols import is_async, is_keyed
from ratefuse.throttle import AdaptiveThrottle, ThrottleConfig, ThrottledError
from ratefuse.web.client_concurrency import Concurrency, ConcurrencySlots, Slot
from ratefuse.web.deadlines import bound_request

BreakerFactory = Callable[[str], CircuitBreaker]
ThrottleFactory = Callable[[str], AdaptiveThrottle]
IsFailure = Callable[[httpx.Response], bool]
Inner = TypeVar("Inner")


def server_error(response: httpx.Response) -> bool:
    """`server_error` is the default failure test: a 5xx status."""
    return response.status_code >= 500


def upstream_accepted(response: httpx.Response) -> bool:
    """`upstream_accepted` is the default accept test of a throttle: the
    upstream took the request unless it answered 429 or 5xx (503 is one)."""
    return response.status_code != 429 and response.status_code < 500


def upstream_of(request: httpx.Request) -> str:
    """`upstream_of` names the host a request goes to: ``scheme://host:port``
    (the default port filled in), the key of its quota and breaker."""
    url = request.url
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.scheme}://{url.host}:{port}"


class _UpstreamAdmission:
    # What lets a request go to its upstream and records how it went: the
    # host's breaker and the quota, shared by the sync and async
    # transports (everything but the I/O and the waiting).

    def __init__(
        self,
        limiter: object | None,
        breaker: BreakerConfig | BreakerFactory | None,
        max_wait: float,
        is_failure: IsFailure,
        throttle: ThrottleConfig | ThrottleFactory | None = None,
        is_accepted: IsFailure = upstream_accepted,
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
        self.limiter: Any = limiter
        self.max_wait = float(max_wait)
        # Whether the caller must wait for the quota (with the limiter's
        # acquire or acquire_async, with `wait_args`) after `admit`.
        self.waits = limiter is not None and bool(max_wait)
        self.is_failure = is_failure
        self._keyed = limiter is not None and is_keyed(limiter)
        self._new_breaker = breaker
        self.breakers: dict[str, CircuitBreaker] = {}
        if isinstance(throttle, ThrottleConfig):
            throttle_config = throttle
            throttle = lambda host: AdaptiveThrottle(throttle_config, name=host)  # noqa: E731
        elif throttle is not None and not callable(throttle):
            raise ValueError(
                "throttle must be a ThrottleConfig, a factory or None, "
                f"got {throttle!r}"
            )
        if not callable(is_accepted):
            raise ValueError(f"is_accepted must be callable, got {is_accepted!r}")
        self._new_throttle = throttle
        self.throttling = throttle is not None
        self.is_accepted = is_accepted
        self.throttles: dict[str, AdaptiveThrottle] = {}

    def throttle_for(self, host: str) -> AdaptiveThrottle | None:
        """`throttle_for` returns the throttle of ``host``, made on first
        use (None without throttles)."""
        if self._new_throttle is None:
            return None
        throttle = self.throttles.get(host)
        if throttle is None:
            throttle = self.throttles.setdefault(host, self._new_throttle(host))
        return throttle

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

    def admit(self, request: httpx.Request) -> Permit | None:
        """`admit` asks the host's throttle (ThrottledError when it refuses,
        before anything else), takes the permit of the request's host from
        its breaker (None without breakers; CircuitOpenError when open,
        before any quota is spent), then the quota unless the caller
        `waits` for it (RateLimitExceeded, the permit released)."""
        host = upstream_of(request)
        if self.throttling:
            throttle = self.throttle_for(host)
            if throttle is not None and not throttle.admit():
                raise ThrottledError(throttle.name, 0.0)
        breaker = self.breaker_for(host)
        permit = None
        if breaker is not None:
            permit = breaker.try_acquire()
            if permit is None:
                raise breaker.open_error()
        if self.limiter is not None and not self.waits:
            with released_on_error(permit):
                decision = self.limiter.decide(*self.key_args(request))
                if not decision.allowed:
                    raise RateLimitExceeded(decision)
        return permit

    def key_args(self, request: httpx.Request) -> tuple[str, ...]:
        """`key_args` is the key of ``request`` as the limiter's leading
        argument: its upstream for a keyed limiter, none for one quota."""
        return (upstream_of(request),) if self._keyed else ()

    def wait_args(self, request: httpx.Request) -> tuple[Any, ...]:
        """`wait_args` are the arguments of the limiter's acquire (or
        acquire_async) for ``request``: its key, cost 1 and ``max_wait``."""
        return (*self.key_args(request), 1, self.max_wait)

    def sending(
        self, permit: Permit | None, slot: Slot | None, request: httpx.Request
    ) -> _Sending:
        """`sending` wraps the inner transport's exchange of ``request``
        (a with-statement), which then reports how it went."""
        return _Sending(self, permit, slot, request)


class _Sending:
    # One request's exchange with its upstream under ``permit`` and
    # ``slot``: on exit, the adaptive limit, the throttle and the breaker
    # hear how it went. The failures are the responses ``is_failure``
    # accepts (recorded as httpx.HTTPStatusError) and the exceptions of the
    # inner transport; a BaseException (KeyboardInterrupt, SystemExit,
    # cancellation) gives no verdict on the upstream and only gives back
    # the permit and the slot.

    __slots__ = ("admission", "permit", "request", "response", "slot", "started")

    def __init__(
        self,
        admission: _UpstreamAdmission,
        permit: Permit | None,
        slot: Slot | None,
        request: httpx.Request,
    ) -> None:
        self.admission = admission
        self.permit = permit
        self.slot = slot
        self.request = request
        self.response: httpx.Response | None = None

    def __enter__(self) -> _Sending:
        self.started = time.perf_counter()
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        permit, slot = self.permit, self.slot
        failed = False
        if exc is None and (permit is not None or slot is not None):
            assert self.response is not None, "the with-block sets the response"
            try:
                failed = self.admission.is_failure(self.response)
            except BaseException as raised:
                # A failure test that raises records nothing, but must not
                # keep the permit (a HALF_OPEN probe slot would stay taken)
                # or the slot.
                if slot is not None:
                    slot.close(raised, False)
                if permit is not None:
                    permit.release()
                raise
        if slot is not None:
            slot.close(exc, failed)
        throttle = (
            self.admission.throttle_for(upstream_of(self.request))
            if self.admission.throttling
            else None
        )
        if throttle is not None and isinstance(exc, Exception):
            throttle.record(False)
        elif throttle is not None and exc is None:
            assert self.response is not None, "the with-block sets the response"
            with released_on_error(permit):
                throttle.record(self.admission.is_accepted(self.response))
        if permit is None:
            return
        duration = time.perf_counter() - self.started
        if exc is not None:
            if isinstance(exc, Exception):
                permit.on_error(duration, exc)
            else:
                permit.release()
            return
        if failed:
            assert self.response is not None, "the with-block sets the response"
            error = httpx.HTTPStatusError(
                f"upstream answered {self.response.status_code}",
                request=self.request,
                response=self.response,
            )
            permit.on_error(duration, error)
        else:
            permit.on_success(duration)


@contextmanager
def released_on_error(permit: Permit | None) -> Iterator[None]:
    """`released_on_error` gives back ``permit`` (None: nothing) if the
    with-block raises anything, and re-raises."""
    try:
        yield
    except BaseException:
        if permit is not None:
            permit.release()
        raise


class _TransportBase(Generic[Inner]):
    # The options both transports take and what they keep: the inner
    # transport (None: a new ``new_transport()``) and the admission.

    new_transport: Callable[[], Inner]

    def __init__(
        self,
        transport: Inner | None = None,
        *,
        limiter: object | None = None,
        breaker: BreakerConfig | BreakerFactory | None = None,
        max_wait: float = 0.0,
        is_failure: IsFailure = server_error,
        deadline_header: str | None = None,
        throttle: ThrottleConfig | ThrottleFactory | None = None,
        is_accepted: IsFailure = upstream_accepted,
        concurrency: Concurrency | None = None,
    ) -> None:
        self._admission = _UpstreamAdmission(
            limiter, breaker, max_wait, is_failure, throttle, is_accepted
        )
        if deadline_header is not None and not isinstance(deadline_header, str):
            raise ValueError(
                "deadline_header must be a header name or None, "
                f"got {deadline_header!r}"
            )
        self._deadline_header = deadline_header
        self._transport = self.new_transport() if transport is None else transport
        self._slots = (
            None if concurrency is None else ConcurrencySlots(concurrency, upstream_of)
        )

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """`breakers` maps each upstream seen to its breaker."""
        return self._admission.breakers

    @property
    def throttles(self) -> dict[str, AdaptiveThrottle]:
        """`throttles` maps each upstream seen to its adaptive throttle."""
        return self._admission.throttles


class GuardedTransport(_TransportBase[httpx.BaseTransport], httpx.BaseTransport):
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
    its breaker. Under a running ``ratefuse.deadline`` a request with no
    time left is refused (DeadlineExceeded), its timeouts are cut to the
    time left, and ``deadline_header`` (None: not sent) carries the time
    left to the upstream (see ratefuse.web.deadlines). ``throttle``: a
    ThrottleConfig (one AdaptiveThrottle per host), a factory
    ``host -> AdaptiveThrottle``, or None; it refuses
    requests locally (ThrottledError, before the breaker and the quota)
    in proportion as the host's accept ratio falls; ``is_accepted`` says
    which responses count as accepted (default: not 429, not 5xx;
    transport errors never do); ``throttles`` maps each host seen to its
    throttle. ``concurrency``: an
    AdaptiveLimiter (one adaptive concurrency limit for all hosts), a
    factory ``host -> AdaptiveLimiter`` (one per host) or None; see
    :mod:`ratefuse.web.client_concurrency`. Thread-safe as the limiter and
    breakers are.
    """

    new_transport = httpx.HTTPTransport

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        bound_request(request, self._deadline_header)
        admission = self._admission
        permit = admission.admit(request)
        with released_on_error(permit):
            if admission.waits:
                admission.limiter.acquire(*admission.wait_args(request))
            # Last: the sample is the exchange alone, and a local refusal
            # (AdaptiveLimitFullError) is no outcome of the upstream.
            slot = None if self._slots is None else self._slots.take(request)
        with admission.sending(permit, slot, request) as sent:
            sent.response = response = self._transport.handle_request(request)
        return response

    def close(self) -> None:
        self._transport.close()


class AsyncGuardedTransport(
    _TransportBase[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport
):
    """`AsyncGuardedTransport` is :class:`GuardedTransport` for
    ``httpx.AsyncClient``: the inner transport defaults to
    ``httpx.AsyncHTTPTransport()`` and waiting for the quota awaits the
    limiter's ``acquire_async``. Cancellation while sending records
    nothing (the breaker's permit is released)."""

    new_transport = httpx.AsyncHTTPTransport

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        bound_request(request, self._deadline_header)
        admission = self._admission
        permit = admission.admit(request)
        with released_on_error(permit):
            if admission.waits:
                await admission.limiter.acquire_async(*admission.wait_args(request))
            slot = None
            if self._slots is not None:
                slot = await self._slots.take_async(request)
        with admission.sending(permit, slot, request) as sent:
            response = await self._transport.handle_async_request(request)
            sent.response = response
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()
