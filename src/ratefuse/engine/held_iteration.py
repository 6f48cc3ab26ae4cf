"""Holding a resource (a breaker permit, a bulkhead slot) through iteration.

A decorated generator or async generator function runs its body only while
it is iterated, so a decorator that takes a permit or a slot around the
*call* would let it go before the first item (a breaker would record success
at creation, a bulkhead release before any work). `relay` and `relay_async`
instead take it at the first ``next()``, relay every item, ``send``,
``throw`` and ``close`` to the inner generator, and report the end exactly
once on every exit path: exhaustion and an early close (the consumer stopped
asking; nothing failed) as None, an exception as itself.
"""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
)
from typing import Any, cast

# What the end of an iteration is reported to: None, or the exception.
Done = Callable[[BaseException | None], None]


def relay(hold: Callable[[], tuple[Iterable[Any], Done]]) -> Generator[Any, Any, Any]:
    """`relay` calls ``hold()`` at the first ``next()`` for (the inner
    iterable, its `Done`), relays the inner iterable and reports its end."""
    inner, done = hold()
    try:
        # A generator's return value passes through; other iterables give None.
        result = yield from cast(Generator[Any, Any, Any], inner)
    except GeneratorExit:
        done(None)
        raise
    except BaseException as exc:
        done(exc)
        raise
    done(None)
    return result


async def relay_async(
    hold: Callable[[], Awaitable[tuple[AsyncIterator[Any], Done]]],
) -> AsyncGenerator[Any, Any]:
    """`relay_async` is `relay` for async iterators: ``hold()`` is awaited at
    the first ``__anext__()``; ``asend``, ``athrow`` and ``aclose`` reach the
    inner one if it has them."""
    inner, done = await hold()
    try:
        try:
            value = await inner.__anext__()
            while True:
                try:
                    sent = yield value
                except GeneratorExit:
                    aclose = getattr(inner, "aclose", None)
                    if aclose is not None:
                        await aclose()
                    raise
                except BaseException as exc:
                    athrow = getattr(inner, "athrow", None)
                    if athrow is None:
                        raise
                    value = await athrow(exc)
                else:
                    if sent is None:
                        value = await inner.__anext__()
                    else:
                        value = await inner.asend(sent)  # type: ignore[attr-defined]
        except StopAsyncIteration:
            pass
    except GeneratorExit:
        done(None)
        raise
    except BaseException as exc:
        done(exc)
        raise
    done(None)
