"""The retry budget's target (issue 17): an upstream that fails every call
receives no more retries than the budget allows, over 10,000 calls.

10,000 calls, 1 ms apart on a manual clock (10 s), each retried up to 4
times through the built-in ``retry`` decorator and through tenacity with
``retry_if_budget``; the budget is 20% of the calls of the last 10 s plus
10 retries a second. Prints the retries the upstream received and the
budget's bound, ratio * calls + min_per_second * (run + window).

    python benchmarks/retry_budget.py
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from tenacity import Retrying, stop_after_attempt

from checkout import use_checkout

use_checkout()

from ratefuse import BackendError  # noqa: E402
from ratefuse.retry import RetryBudget, retry  # noqa: E402
from ratefuse.retry.tenacity import retry_if_budget  # noqa: E402

CALLS, STEP_NS, RATIO, FLOOR, WINDOW = 10_000, 1_000_000, 0.2, 10, 10.0


def retries(
    wrap: Callable[[RetryBudget, Callable[[], None]], Callable[[], None]],
) -> int:
    now = [10**9]
    budget = RetryBudget(RATIO, FLOOR, WINDOW, clock=lambda: now[0])
    received = [0]

    def upstream() -> None:
        received[0] += 1
        raise BackendError("upstream down")

    call = wrap(budget, upstream)
    for _ in range(CALLS):
        now[0] += STEP_NS
        with contextlib.suppress(BackendError):  # it always fails
            call()
    return received[0] - CALLS


def main() -> None:
    bound = RATIO * CALLS + FLOOR * (CALLS * STEP_NS / 1e9 + WINDOW)
    forms = {
        "retry decorator": lambda budget, upstream: retry(
            5, budget=budget, sleep=lambda _: None
        )(upstream),
        "tenacity": lambda budget, upstream: (
            lambda: Retrying(
                retry=retry_if_budget(budget),
                stop=stop_after_attempt(5),
                sleep=lambda _: None,
                reraise=True,
            )(upstream)
        ),
    }
    for name, wrap in forms.items():
        print(
            f"{name:16} {retries(wrap):5d} retries for {CALLS} calls"
            f" (bound {bound:.0f})"
        )


if __name__ == "__main__":
    main()
