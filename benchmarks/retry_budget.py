"""The retry budget's target (issue 17): an upstream that fails every call
receives no more retries than the budget allows, over 10,000 calls.

The scenario (ratefuse.bench.retry_budget, which the test suite asserts):
10,000 calls, 1 ms apart on a manual clock (10 s), each retried up to 4
times through the built-in ``retry`` decorator and through tenacity with
``retry_if_budget``; the budget is 20% of the calls of the last 10 s plus
10 retries a second. Prints the retries the upstream received and the
budget's bound, ratio * calls + min_per_second * (run + window).

    python benchmarks/retry_budget.py
"""

from __future__ import annotations

from checkout import use_checkout

use_checkout()

from ratefuse.bench.retry_budget import BOUND, CALLS, FORMS, retries_received  # noqa: E402


def main() -> None:
    for name, wrap in FORMS.items():
        print(
            f"{name:16} {retries_received(wrap):5d} retries for {CALLS} calls"
            f" (bound {BOUND:.0f})"
        )


if __name__ == "__main__":
    main()
