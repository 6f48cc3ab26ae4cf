"""`ServerInterceptor`: rate limits and bulkheads for a sync ``grpc.Server``.

    per_token = Limit(KeyedLimiter("10/s"), key=metadata("x-api-key"))
    rules = [MethodRule("/shop.Orders/*", per_token)]
    server = grpc.server(pool, interceptors=[ServerInterceptor(rules)])

A denied call ends with RESOURCE_EXHAUSTED, a message naming the limit,
and the retry delay in trailing metadata (``grpc-retry-pushback-ms`` and a
``google.rpc.RetryInfo``); see :mod:`ratefuse.grpc.status`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import grpc

from ratefuse.bulkhead import BulkheadFullError
from ratefuse.core.errors import RateLimitExceeded
from ratefuse.grpc.admission import (
    Denial,
    MethodPolicy,
    WaitFor,
    admission,
    wait_budget,
)
from ratefuse.grpc.base import InterceptorBase
from ratefuse.grpc.slots import ABANDONED, give_back, held_by
from ratefuse.grpc.status import denial_metadata

Behavior = Callable[[Any, Any], Any]


class ServerInterceptor(InterceptorBase, grpc.ServerInterceptor):  # type: ignore[misc]
    """`ServerInterceptor` enforces ``rules`` (:class:`MethodRule`, first
    match wins) on a sync ``grpc.Server``; ``rules`` None follows the
    ``[grpc]`` config of ``registry``, hot reloads included. Limiters may be
    given by their name in ``registry``. Thread-safe: the server's threads
    share it."""

    aio = False

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        """`intercept_service` wraps the method's handler in its policy."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self.wrapped(handler, handler_call_details.method, _unary, _streaming)


def deny(context: Any, denial: Denial) -> None:
    """`deny` ends the call with RESOURCE_EXHAUSTED (raises, as
    ``context.abort`` does)."""
    context.set_trailing_metadata(denial_metadata(denial.message, denial.retry_after))
    context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, denial.message)


def admit(policy: MethodPolicy, context: Any) -> None:
    """`admit` returns if ``policy``'s limits admit the call, else ends it."""
    single = policy.single
    if single is not None:
        refused = single.refusal(context)
        if refused is not None:
            deny(context, policy.denial(0, refused.retry_after))
        return
    steps = admission(policy, context)
    try:
        step = next(steps)
        while True:
            if not isinstance(step, WaitFor):
                raise TypeError("an async limiter needs the asyncio interceptor")
            step = steps.send(_wait(step))
    except StopIteration as stop:
        if stop.value is not None:
            deny(context, stop.value)


def _wait(step: WaitFor) -> bool:
    assert step.limit.acquire is not None
    try:
        step.limit.acquire(*step.arguments(), timeout=step.timeout)
    except RateLimitExceeded:
        return False
    return True


class _Slot:
    # A bulkhead slot (or an adaptive limit's permit), given back once
    # whichever way the call ends first (list.pop is atomic: the handler
    # thread and gRPC's callback race).
    __slots__ = ("_held",)

    def __init__(self, policy: MethodPolicy, context: Any) -> None:
        bulkhead = policy.bulkhead
        self._held: list[Any] = []
        if bulkhead is None:
            return
        try:
            taken = bulkhead.acquire(timeout=wait_budget(bulkhead.max_wait, context))
        except BulkheadFullError as error:  # AdaptiveLimitFullError is one
            deny(context, policy.bulkhead_full(error))
        self._held.append(held_by(bulkhead, taken))

    def release(self, ended: BaseException | None = ABANDONED) -> None:
        try:
            held = self._held.pop()
        except IndexError:
            return
        give_back(held, ended)


def _requests(
    policy: MethodPolicy, context: Any, requests: Iterable[Any]
) -> Iterator[Any]:
    # A request stream admitted message by message.
    for request in requests:
        admit(policy, context)
        yield request


def _responses(slot: _Slot, responses: Iterable[Any]) -> Iterator[Any]:
    ended: BaseException | None = ABANDONED
    try:
        yield from responses
        ended = None
    except BaseException as exc:
        ended = exc
        raise
    finally:
        slot.release(ended)


def _admitted(
    policy: MethodPolicy, context: Any, request: Any, per_message: bool
) -> Any:
    # The request (or request stream) once the call is admitted; with
    # per_message, a stream whose every message is admitted as it comes.
    if per_message:
        return _requests(policy, context, request)
    admit(policy, context)
    return request


def _unary(inner: Behavior, policy: MethodPolicy, per_message: bool) -> Behavior:
    if policy.single is not None and policy.bulkhead is None and not per_message:
        refusal = policy.single.refusal

        def limited(request: Any, context: Any) -> Any:
            # The common case: one limit, no bulkhead.
            refused = refusal(context)
            if refused is not None:
                deny(context, policy.denial(0, refused.retry_after))
            return inner(request, context)

        return limited

    def behavior(request: Any, context: Any) -> Any:
        request = _admitted(policy, context, request, per_message)
        slot = _Slot(policy, context)
        ended: BaseException | None = ABANDONED
        try:
            response = inner(request, context)
            ended = None
            return response
        except BaseException as exc:
            ended = exc
            raise
        finally:
            slot.release(ended)

    return behavior


def _streaming(inner: Behavior, policy: MethodPolicy, per_message: bool) -> Behavior:

    def behavior(request: Any, context: Any) -> Any:
        request = _admitted(policy, context, request, per_message)
        slot = _Slot(policy, context)
        # The slot is held while the responses are produced; gRPC's
        # callback frees it if the call is cancelled or times out while
        # the handler's generator is suspended.
        context.add_callback(slot.release)
        try:
            responses = inner(request, context)
        except BaseException:
            slot.release()
            raise
        return _responses(slot, responses)

    return behavior
