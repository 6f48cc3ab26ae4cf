"""Benchmarks run with pytest-benchmark; not part of the default test run.

Each round performs ``ratefuse.scenarios.CALLS_PER_ROUND`` (1,000) calls, so
the time-per-round columns in microseconds read as ns per call. CI runs them
once with ``--benchmark-disable`` so they cannot rot.
"""
