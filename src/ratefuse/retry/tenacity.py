"""tenacity strategies that respect ratefuse's limits, breakers, deadlines
and retry budgets (``pip install 'ratefuse[tenacity]'``)::

    from tenacity import Retrying, stop_after_attempt
    from ratefuse.retry.tenacity import (
        retry_if_budget, stop_before_deadline, wait_retry_after,
    )

    for attempt in Retrying(
        wait=wait_retry_after(),
        stop=stop_after_attempt(5) | stop_before_deadline(),
        retry=retry_if_budget(budget),
        reraise=True,
    ):
        with attempt:
            call_upstream()

They share the planner of the built-in decorator (`ratefuse.retry.plan`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tenacity import RetryCallState
from tenacity.retry import retry_base, retry_if_exception_type
from tenacity.stop import stop_base
from tenacity.wait import wait_base, wait_exponential

from ratefuse.core.errors import DeadlineExceeded
from ratefuse.engine.deadline import remaining
from ratefuse.retry.budget import RetryBudget
from ratefuse.retry.plan import (
    DEFAULT_JITTER,
    RETRIABLE,
    check_jitter,
    next_wait,
    retry_after_of,
)

__all__ = ["retry_if_budget", "stop_before_deadline", "wait_retry_after"]


def _error(state: RetryCallState) -> BaseException | None:
    # The exception of the attempt just made, if it raised.
    outcome = state.outcome
    if outcome is None or not outcome.failed:
        return None
    return outcome.exception()


class wait_retry_after(wait_base):
    """`wait_retry_after` waits an error's ``retry_after`` (a
    RateLimitExceeded's or CircuitOpenError's) plus a jitter of up to
    ``jitter`` times as much, and ``fallback`` (default: exponential from
    0.1 s to 10 s) after an error that gives none. A wait that cannot help
    or fit the deadline is 0: pair it with `stop_before_deadline`, which
    then stops."""

    def __init__(
        self,
        fallback: wait_base | None = None,
        jitter: float = DEFAULT_JITTER,
        rng: Callable[[], float] | None = None,
    ) -> None:
        self.fallback = (
            wait_exponential(multiplier=0.1, max=10.0) if fallback is None else fallback
        )
        self.jitter = check_jitter(jitter)
        self.rng = random.random if rng is None else rng

    def __call__(self, retry_state: RetryCallState) -> float:
        wait = next_wait(
            _error(retry_state), self.fallback(retry_state), self.jitter, self.rng
        )
        return 0.0 if wait is None else wait


class stop_before_deadline(stop_base):
    """`stop_before_deadline` stops retrying when the running call's
    deadline (``ratefuse.deadline``) cannot hold the next attempt: the time
    is spent, the upcoming sleep does not fit it, the error's retry_after
    (a breaker OPEN for longer, a limit's wait) does not, or the error is
    a DeadlineExceeded. Without a deadline it stops only on a retry_after
    of ``inf`` (a cost that can never be admitted)."""

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = _error(retry_state)
        if isinstance(error, DeadlineExceeded):
            return True
        retry_after = retry_after_of(error)
        if retry_after is not None and retry_after == float("inf"):
            return True
        left = remaining()
        if left is None:
            return False
        if left <= 0.0 or retry_state.upcoming_sleep > left:
            return True
        return retry_after is not None and retry_after > left


class retry_if_budget(retry_base):
    """`retry_if_budget` retries when ``retry`` (default: the retriable
    ratefuse errors, `plan.RETRIABLE`) says so and ``budget`` allows a
    retry now. It counts every call's first attempt in the budget, so use
    one instance for every call it budgets. tenacity asks the retry
    condition before the stop condition, so a retry that the stop then
    refuses (the last attempt) has spent a retry of the budget: the budget
    errs on the side of fewer retries."""

    def __init__(self, budget: RetryBudget, retry: retry_base | None = None) -> None:
        self.budget = budget
        self.retry = retry_if_exception_type(RETRIABLE) if retry is None else retry

    def __call__(self, retry_state: RetryCallState) -> bool:
        if retry_state.attempt_number == 1:
            self.budget.record_call()
        if not self.retry(retry_state):
            return False
        return self.budget.try_retry()
