"""What the sync and asyncio client interceptors share: which breaker
guards a call (one per target, or one per method), how its outcome is
recorded, and the outbound limiter's wait within the call's deadline.

The breaker may be any :class:`ratefuse.engine.breaker_forms.Breaker`:
a local :class:`ratefuse.CircuitBreaker` or a Redis ``FleetBreaker``
(``AsyncFleetBreaker`` on the asyncio interceptors).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from ratefuse.config._grpc_schema import (
    DEFAULT_FAILURE_CODES as DEFAULT_FAILURE_CODE_NAMES,
)
from ratefuse.core.errors import CircuitOpenError, RateLimitExceeded
from ratefuse.engine.breaker_forms import Breaker, BreakerPermit, finish
from ratefuse.grpc.config import client_entry, status_codes
from ratefuse.grpc.status import CircuitOpenRpcError, RateLimitedRpcError

# The statuses that count as the breaker's failures unless configured: the
# ones an overloaded, failing or unreachable upstream answers.
DEFAULT_FAILURE_CODES = status_codes(DEFAULT_FAILURE_CODE_NAMES)
DEFAULT_MAX_WAIT = math.inf


class Guard:
    """`Guard` is a client interceptor's settings (see
    :class:`ratefuse.grpc.ClientInterceptor`) and the steps of a call."""

    def __init__(
        self,
        breaker: Breaker | None,
        breaker_per_method: Callable[[str], Breaker] | None,
        limiter: Any,
        failure_codes: Iterable[grpc.StatusCode],
        max_wait: float,
        raise_circuit_open: bool,
    ) -> None:
        if breaker is not None and breaker_per_method is not None:
            raise ValueError("give breaker or breaker_per_method, not both")
        for name, value in (("breaker", breaker), ("limiter", limiter)):
            needed = "permit_or_error" if name == "breaker" else "acquire"
            if value is not None and not callable(getattr(value, needed, None)):
                raise TypeError(f"{name} must have a {needed} method, got {value!r}")
        if breaker_per_method is not None and not callable(breaker_per_method):
            raise TypeError(
                f"breaker_per_method must be callable, got {breaker_per_method!r}"
            )
        codes = frozenset(failure_codes)
        for code in codes:
            if not isinstance(code, grpc.StatusCode) or code == grpc.StatusCode.OK:
                raise ValueError(
                    f"failure_codes must be grpc.StatusCode members other than OK, "
                    f"got {code!r}"
                )
        if (
            isinstance(max_wait, bool)
            or not isinstance(max_wait, (int, float))
            or not max_wait >= 0
        ):
            raise ValueError(f"max_wait must be seconds >= 0, got {max_wait!r}")
        self.breaker = breaker
        self._per_method = breaker_per_method
        self._breakers: dict[str, Breaker] = {}
        self.limiter = limiter
        self.failure_codes = codes
        self.max_wait = float(max_wait)
        self.raise_circuit_open = bool(raise_circuit_open)
        self._registry: Any = None
        self._client = ""
        self._config_seen: object = None

    @property
    def breaker_is_fixed(self) -> bool:
        """`breaker_is_fixed` tells whether `breaker_for` always answers
        `breaker` (no registry to reload, no breaker per method)."""
        return self._registry is None and self._per_method is None

    def follow(self, registry: Any, client: str) -> None:
        """`follow` takes the breaker, limiter and failure codes of
        ``client`` in ``registry``'s ``[grpc.clients]``, again after each
        reload; raises KeyError when there is no such client."""
        if self.breaker is not None or self._per_method is not None:
            raise ValueError("give a registry client, or breakers, not both")
        if self.limiter is not None:
            raise ValueError("give a registry client, or a limiter, not both")
        self._registry = registry
        self._client = client
        self._take(registry.config)

    def _take(self, config: Any) -> None:
        entry = client_entry(config, self._client)
        registry = self._registry
        breaker = None if entry.breaker is None else registry.breaker(entry.breaker)
        limiter = None if entry.limiter is None else registry.limiter(entry.limiter)
        self.breaker, self.limiter = breaker, limiter
        self.failure_codes = status_codes(entry.failure_codes)
        self._config_seen = config

    def breaker_for(self, method: str | bytes) -> Breaker | None:
        """`breaker_for` is the breaker guarding ``method`` (None: none);
        a call starts with it, so a registry's reload is seen here."""
        registry = self._registry
        if registry is not None and registry.config is not self._config_seen:
            self._take(registry.config)
        per_method = self._per_method
        if per_method is None:
            return self.breaker
        name = method.decode() if isinstance(method, bytes) else method
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers.setdefault(name, per_method(name))
        return breaker

    def rejected(self, error: CircuitOpenError) -> BaseException:
        """`rejected` is what an open breaker's call raises: UNAVAILABLE
        (an RpcError), or the CircuitOpenError itself if configured."""
        return error if self.raise_circuit_open else CircuitOpenRpcError(error)

    def wait_budget(self, details: Any) -> float:
        """`wait_budget` is how long the limiter may wait for ``details``'s
        call: ``max_wait``, never past the call's timeout."""
        timeout = details.timeout
        return self.max_wait if timeout is None else min(self.max_wait, timeout)

    def admit(self, details: Any) -> Any:
        """`admit` takes the outbound limiter's unit (there must be one),
        blocking at most the call's timeout, and returns the call details
        with what is left of the timeout; raises RateLimitedRpcError if
        none comes in time."""
        budget = self.wait_budget(details)
        began = time.monotonic()
        try:
            self.limiter.acquire(1, timeout=None if budget == math.inf else budget)
        except RateLimitExceeded as exc:
            raise RateLimitedRpcError(exc, exc.retry_after) from exc
        return rest_of_timeout(details, began)

    async def admit_async(self, details: Any) -> Any:
        """`admit_async` is `admit` sleeping in the event loop."""
        budget = self.wait_budget(details)
        began = time.monotonic()
        try:
            await self.limiter.acquire_async(
                1, timeout=None if budget == math.inf else budget
            )
        except RateLimitExceeded as exc:
            raise RateLimitedRpcError(exc, exc.retry_after) from exc
        return rest_of_timeout(details, began)

    def record(
        self,
        breaker: Breaker,
        permit: BreakerPermit,
        start_ns: int,
        code: grpc.StatusCode,
        details: str | None,
    ) -> None:
        """`record` reports a finished call with status ``code`` to its
        permit: a failure code as an error, CANCELLED (the caller's
        choice, not the upstream's health) as no outcome, any other as a
        success, with the call's duration for slow-call tracking."""
        if code == grpc.StatusCode.CANCELLED:
            permit.release()
            return
        duration, now = finish(breaker, permit, start_ns)
        if code in self.failure_codes:
            error = grpc.aio.AioRpcError(
                code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details
            )
            permit.on_error(duration, error, now)
        else:
            permit.on_success(duration, now)


def rest_of_timeout(details: Any, began: float) -> Any:
    """`rest_of_timeout` is ``details`` with its timeout less the time
    waited since ``began`` (monotonic seconds), so that the deadline the
    server sees is the caller's."""
    timeout = details.timeout
    if timeout is None:
        return details
    waited = time.monotonic() - began
    return details._replace(timeout=max(0.0, timeout - waited))


class Guarded:
    """`Guarded` builds a client interceptor's `Guard` from its options
    (documented on :class:`ratefuse.grpc.ClientInterceptor`)."""

    def __init__(
        self,
        breaker: Breaker | None = None,
        *,
        breaker_per_method: Callable[[str], Breaker] | None = None,
        limiter: Any = None,
        failure_codes: Iterable[grpc.StatusCode] = DEFAULT_FAILURE_CODES,
        max_wait: float = DEFAULT_MAX_WAIT,
        raise_circuit_open: bool = False,
        registry: object | None = None,
        client: str | None = None,
    ) -> None:
        self.guard = Guard(
            breaker,
            breaker_per_method,
            limiter,
            failure_codes,
            max_wait,
            raise_circuit_open,
        )
        if (registry is None) != (client is None):
            raise ValueError("registry and client go together")
        if client is not None:
            self.guard.follow(registry, client)
