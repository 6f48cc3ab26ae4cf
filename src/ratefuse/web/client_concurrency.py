"""The httpx transports' ``concurrency`` option: each request is sent
under an :class:`~ratefuse.adaptive.AdaptiveLimiter`, one for every
upstream or one per upstream host.

The slot is taken last, right before the request is sent (after the
host's throttle, breaker and quota let it go), and returned when the inner
transport answers (the response's headers: a streamed body is read later,
by the caller); that time is the sample. An exception of the inner
transport or a response ``is_failure`` accepts (5xx by default) is a drop;
a cancellation returns the slot without a sample. No slot within the
limiter's ``max_wait``: AdaptiveLimitFullError, raised before anything is
sent, so the breaker's permit goes back with no outcome and the throttle
records nothing (the upstream never saw the request).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import httpx

from ratefuse.adaptive import AdaptiveLimiter, AdaptivePermit

Concurrency: TypeAlias = AdaptiveLimiter | Callable[[str], AdaptiveLimiter]


class Slot:
    """`Slot` is one request's place under its adaptive limit, taken just
    before the request is sent; `close` gives it back with the sample of
    how the exchange went."""

    __slots__ = ("limiter", "permit")

    def __init__(self, limiter: AdaptiveLimiter, permit: AdaptivePermit) -> None:
        self.limiter = limiter
        self.permit = permit

    def close(self, exc: BaseException | None, failed: bool) -> None:
        """`close` returns the slot of an exchange that raised ``exc``
        (the limiter's ``finish`` decides: a drop or no sample) or
        answered with a response, ``failed`` or not (a drop or a
        latency sample)."""
        if exc is not None:
            self.limiter.finish(self.permit, exc)
        elif failed:
            self.permit.drop()
        else:
            self.permit.release()


class ConcurrencySlots:
    """`ConcurrencySlots` finds the adaptive limiter of a request (the one
    given, or the factory's for its host, made on first use) and takes a
    slot under it, waiting up to the limiter's ``max_wait``."""

    def __init__(
        self, concurrency: Concurrency, host_of: Callable[[httpx.Request], str]
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
        self.limiters: dict[str, AdaptiveLimiter] = {}

    def limiter_for(self, request: httpx.Request) -> AdaptiveLimiter:
        """`limiter_for` is the adaptive limiter ``request`` is sent under."""
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

    def take(self, request: httpx.Request) -> Slot:
        """`take` waits (blocking) for a slot for ``request``."""
        limiter = self.limiter_for(request)
        return Slot(limiter, limiter.acquire())

    async def take_async(self, request: httpx.Request) -> Slot:
        """`take_async` waits for a slot without blocking the event loop."""
        limiter = self.limiter_for(request)
        return Slot(limiter, await limiter.acquire_async())
