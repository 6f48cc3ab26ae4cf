"""Retries that respect ratefuse's limits, breakers and deadlines.

`retry` (a decorator, sync and asyncio) and `RetryBudget` (retries as a
share of recent calls) need nothing else; `ratefuse.retry.tenacity` holds
the tenacity strategies (``pip install 'ratefuse[tenacity]'``). Both wait
what one planner says (`ratefuse.retry.plan`).
"""

from ratefuse.retry.budget import RetryBudget
from ratefuse.retry.decorator import Retry, retry
from ratefuse.retry.plan import RETRIABLE, Backoff, next_wait

__all__ = ["RETRIABLE", "Backoff", "Retry", "RetryBudget", "next_wait", "retry"]
