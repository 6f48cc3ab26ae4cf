"""`AsyncServerInterceptor`: rate limits and bulkheads for ``grpc.aio``
servers, the twin of :class:`ratefuse.grpc.ServerInterceptor`.

Handlers must be coroutines (unary responses) or async generators /
``context.write`` coroutines (streamed responses), as grpc.aio runs them.
Limiters may be sync (decided in the event loop: in memory, shared
memory) or asyncio ones (Redis on ``redis.asyncio``); waits sleep in the
loop, within the call's deadline.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
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


class AsyncServerInterceptor(InterceptorBase, grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """`AsyncServerInterceptor` is :class:`ServerInterceptor` for
    ``grpc.aio.server(interceptors=[...])``. Use it from one event loop."""

    aio = True

    async def intercept_service(
        self, continuation: Any, handler_call_details: Any
    ) -> Any:
        """`intercept_service` wraps the method's handler in its policy."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self.wrapped(handler, handler_call_details.method, _unary, _streaming)


async def deny(context: Any, denial: Denial) -> None:
    """`deny` ends the call with RESOURCE_EXHAUSTED (raises, as
    ``context.abort`` does)."""
    metadata = denial_metadata(denial.message, denial.retry_after)
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED, denial.message, trailing_metadata=metadata
    )


async def admit(policy: MethodPolicy, context: Any) -> None:
    """`admit` returns if ``policy``'s limits admit the call, else ends it."""
    single = policy.single
    if single is not None:
        refused = single.refusal(context)
        if refused is not None:
            await deny(context, policy.denial(0, refused.retry_after))
        return
    steps = admission(policy, context)
    try:
        step = next(steps)
        while True:
            if isinstance(step, WaitFor):
                step = steps.send(await _wait(step))
            else:
                step = steps.send(await step)
    except StopIteration as stop:
        if stop.value is not None:
            await deny(context, stop.value)


async def _wait(step: WaitFor) -> bool:
    assert step.limit.acquire is not None
    try:
        await step.limit.acquire(*step.arguments(), timeout=step.timeout)
    except RateLimitExceeded:
        return False
    return True


async def _take_slot(policy: MethodPolicy, context: Any) -> Any:
    # What holds the call's slot: the bulkhead, an adaptive limit's permit,
    # or None (no bulkhead); ends the call when the bulkhead stays full
    # within its wait and the deadline.
    bulkhead = policy.bulkhead
    if bulkhead is None:
        return None
    try:
        taken = await bulkhead.acquire_async(
            timeout=wait_budget(bulkhead.max_wait, context)
        )
    except BulkheadFullError as error:  # AdaptiveLimitFullError is one
        await deny(context, policy.bulkhead_full(error))
    return held_by(bulkhead, taken)


async def _requests(
    policy: MethodPolicy, context: Any, requests: AsyncIterator[Any]
) -> AsyncIterator[Any]:
    # A request stream admitted message by message.
    async for request in requests:
        await admit(policy, context)
        yield request


async def _admitted(
    policy: MethodPolicy, context: Any, request: Any, per_message: bool
) -> Any:
    # The request (or request stream) once the call is admitted; with
    # per_message, a stream whose every message is admitted as it comes.
    if per_message:
        return _requests(policy, context, request)
    await admit(policy, context)
    return request


def _unary(inner: Behavior, policy: MethodPolicy, per_message: bool) -> Behavior:
    if policy.single is not None and policy.bulkhead is None and not per_message:
        refusal = policy.single.refusal

        async def limited(request: Any, context: Any) -> Any:
            # The common case: one limit, no bulkhead.
            refused = refusal(context)
            if refused is not None:
                await deny(context, policy.denial(0, refused.retry_after))
            return await inner(request, context)

        return limited

    async def behavior(request: Any, context: Any) -> Any:
        request = await _admitted(policy, context, request, per_message)
        held = await _take_slot(policy, context)
        ended: BaseException | None = ABANDONED
        try:
            response = await inner(request, context)
            ended = None
            return response
        except BaseException as exc:
            ended = exc
            raise
        finally:
            give_back(held, ended)

    return behavior


def _streaming(inner: Behavior, policy: MethodPolicy, per_message: bool) -> Behavior:

    async def behavior(request: Any, context: Any) -> AsyncIterator[Any]:
        request = await _admitted(policy, context, request, per_message)
        held = await _take_slot(policy, context)
        # Released when the responses end, fail, or the call is cancelled
        # or times out (the task is cancelled inside this generator).
        ended: BaseException | None = ABANDONED
        try:
            responses = inner(request, context)
            if inspect.isawaitable(responses):  # a context.write handler
                await responses
            else:
                async for response in responses:
                    yield response
            ended = None
        except BaseException as exc:
            ended = exc
            raise
        finally:
            give_back(held, ended)

    return behavior
