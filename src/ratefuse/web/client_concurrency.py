"""The httpx transports' ``concurrency`` option: an inner transport that
sends each request under an :class:`~ratefuse.adaptive.AdaptiveLimiter`,
one for every upstream or one per upstream host.

The slot is taken when the request is sent (after the host's breaker and
quota let it go) and returned when the inner transport answers (the
response's headers: a streamed body is read later, by the caller); that
time is the sample. An exception of the inner transport or a response
``is_failure`` accepts (5xx by default) is a drop; a cancellation returns
the slot without a sample. No slot within the limiter's ``max_wait``:
AdaptiveLimitFullError, which the breaker does not count against the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import httpx

from ratefuse.adaptive import AdaptiveLimiter

Concurrency: TypeAlias = AdaptiveLimiter | Callable[[str], AdaptiveLimiter]


class _Slots:
    # Finds the limiter of a request: the one given, or the factory's for
    # its host, made on first use.

    def __init__(
        self,
        concurrency: Concurrency,
        host_of: Callable[[httpx.Request], str],
        is_failure: Callable[[httpx.Response], bool],
    ) -> None:
        if not isinstance(concurrency, AdaptiveLimiter) and not callable(concurrency):
            raise TypeError(
                "concurrency must be an AdaptiveLimiter, a factory "
                f"host -> AdaptiveLimiter or None, got {concurrency!r}"
            )
        self._shared: AdaptiveLimiter | None = None
        self._new: Callable[[str], object] | None = None
        if isinstance(concurrency, AdaptiveLimiter):
            self._shared = concurrency
        else:
            self._new = concurrency
        self._host_of = host_of
        self.is_failure = is_failure
        self.limiters: dict[str, AdaptiveLimiter] = {}

    def limiter_for(self, request: httpx.Request) -> AdaptiveLimiter:
        if self._shared is not None:
            return self._shared
        host = self._host_of(request)
        limiter = self.limiters.get(host)
        if limiter is None:
            assert self._new is not None
            made = self._new(host)
            if not isinstance(made, AdaptiveLimiter):
                raise TypeError(
                    "the concurrency factory must return an AdaptiveLimiter, "
                    f"got {made!r}"
                )
            # setdefault keeps one limiter if two threads race to make it.
            limiter = self.limiters.setdefault(host, made)
        return limiter


class SlotTransport(httpx.BaseTransport):
    """`SlotTransport` sends through ``inner`` under the adaptive limit of
    each request (see the module)."""

    def __init__(
        self,
        inner: httpx.BaseTransport,
        concurrency: Concurrency,
        host_of: Callable[[httpx.Request], str],
        is_failure: Callable[[httpx.Response], bool],
    ) -> None:
        self._inner = inner
        self._slots = _Slots(concurrency, host_of, is_failure)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        limiter = self._slots.limiter_for(request)
        permit = limiter.acquire()
        try:
            response = self._inner.handle_request(request)
            failed = self._slots.is_failure(response)
        except BaseException as exc:
            limiter.finish(permit, exc)
            raise
        if failed:
            permit.drop()
        else:
            permit.release()
        return response

    def close(self) -> None:
        self._inner.close()


class AsyncSlotTransport(httpx.AsyncBaseTransport):
    """`AsyncSlotTransport` is `SlotTransport` for ``httpx.AsyncClient``:
    it waits for a slot without blocking the event loop."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        concurrency: Concurrency,
        host_of: Callable[[httpx.Request], str],
        is_failure: Callable[[httpx.Response], bool],
    ) -> None:
        self._inner = inner
        self._slots = _Slots(concurrency, host_of, is_failure)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        limiter = self._slots.limiter_for(request)
        permit = await limiter.acquire_async()
        try:
            response = await self._inner.handle_async_request(request)
            failed = self._slots.is_failure(response)
        except BaseException as exc:
            limiter.finish(permit, exc)
            raise
        if failed:
            permit.drop()
        else:
            permit.release()
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
