"""Benchmarks run with pytest-benchmark; not part of the default test run.

Each round performs ``ratefuse.scenarios.CALLS_PER_ROUND`` (1,000) calls, so
the time-per-round columns in microseconds read as ns per call. CI runs them
once with ``--benchmark-disable`` so they cannot rot.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # As timeit does (and `ratefuse bench`): no garbage collection while a
    # round is timed, or the objects other benchmarks keep alive would be
    # traversed on the clock of whichever benchmark allocates next.
    config.option.benchmark_disable_gc = True
