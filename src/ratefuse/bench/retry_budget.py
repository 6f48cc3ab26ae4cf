"""The retry budget's scenario (issue 17), shared by its test and its
benchmark: an upstream that fails every call, 10,000 calls 1 ms apart on a
manual clock (10 s), each retried up to 4 times; the budget is 20% of the
calls of the last 10 s plus 10 retries a second.

`retries_received` runs it through one form (the built-in ``retry``
decorator, or tenacity with ``retry_if_budget``: the ``tenacity`` extra)
and returns the retries the upstream received; `BOUND` is what the budget
allows over the run: ratio * calls + min_per_second * (run + window).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from ratefuse.errors import BackendError
from ratefuse.retry import RetryBudget, retry

CALLS: Final = 10_000
STEP_NS: Final = 1_000_000
RATIO: Final = 0.2
MIN_PER_SECOND: Final = 10
WINDOW: Final = 10.0
ATTEMPTS: Final = 5
BOUND: Final = RATIO * CALLS + MIN_PER_SECOND * (CALLS * STEP_NS / 1e9 + WINDOW)

Wrap = Callable[[RetryBudget, Callable[[], None]], Callable[[], None]]


def with_decorator(
    budget: RetryBudget, upstream: Callable[[], None]
) -> Callable[[], None]:
    """`with_decorator` is ``upstream`` under the built-in ``retry``."""
    return retry(ATTEMPTS, budget=budget, sleep=lambda _: None)(upstream)


def with_tenacity(
    budget: RetryBudget, upstream: Callable[[], None]
) -> Callable[[], None]:
    """`with_tenacity` is ``upstream`` under tenacity's ``Retrying`` with
    ``retry_if_budget``."""
    from tenacity import Retrying, stop_after_attempt

    from ratefuse.retry.tenacity import retry_if_budget

    retrying = Retrying(
        retry=retry_if_budget(budget),
        stop=stop_after_attempt(ATTEMPTS),
        sleep=lambda _: None,
        reraise=True,
    )
    return lambda: retrying(upstream)


FORMS: Final[dict[str, Wrap]] = {
    "retry decorator": with_decorator,
    "tenacity": with_tenacity,
}


def retries_received(wrap: Wrap) -> int:
    """`retries_received` is the number of retries the always-failing
    upstream received through ``wrap``; every call must end in the
    upstream's error (RuntimeError otherwise)."""
    now = [10**9]
    budget = RetryBudget(RATIO, MIN_PER_SECOND, WINDOW, clock=lambda: now[0])
    received = [0]

    def upstream() -> None:
        received[0] += 1
        raise BackendError("upstream down")

    call = wrap(budget, upstream)
    for _ in range(CALLS):
        now[0] += STEP_NS
        try:
            call()
        except BackendError:
            continue
        raise RuntimeError("a call to the always-failing upstream succeeded")
    return received[0] - CALLS
