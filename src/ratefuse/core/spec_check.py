"""`check_specs`: the bounds a `LimitSpec` must meet before a core uses it.

The public config objects (:mod:`ratefuse.rates`) build valid specs, but the
cores' ``reconfigure`` and constructors also take specs directly, so both
twins check them here, once, at construction or reconfiguration: a bad spec
must raise ValueError, never reach the integer arithmetic (a zero period is
a division by zero, SIGFPE in the compiled core; a negative capacity answers
negative ``remaining``).
"""

from __future__ import annotations

from collections.abc import Iterable

from ratefuse.core.algorithms import REGISTRY
from ratefuse.core.spec import MAX_CAPACITY, MAX_PERIOD_NS, MAX_TOLERANCE_NS, LimitSpec


def check_specs(specs: Iterable[LimitSpec]) -> tuple[LimitSpec, ...]:
    """`check_specs` is ``specs`` as a tuple after checking every field of
    every spec (see `check_spec`); raises ValueError for none."""
    checked = tuple(specs)
    if not checked:
        raise ValueError("a limiter needs at least one limit, got none")
    for spec in checked:
        check_spec(spec)
    return checked


def check_spec(spec: LimitSpec) -> None:
    """`check_spec` raises ValueError naming the field and the value unless
    ``spec`` is a LimitSpec of a known algorithm with capacity in
    [1, 2**40] (and the algorithm's ``max_limit``), period_ns in [1, 2**58],
    and interval_ns in [1, period_ns] with interval_ns * capacity at most
    2**60 for the meters (gcra, leaky_bucket), 0 for the window algorithms."""
    if not isinstance(spec, LimitSpec):
        raise ValueError(f"a limit must be a LimitSpec, got {spec!r}")
    record = REGISTRY.by_name(spec.algorithm)
    capacity, period_ns, interval_ns = spec.capacity, spec.period_ns, spec.interval_ns
    _check_int("capacity", capacity, 1, MAX_CAPACITY, spec)
    if record.max_limit is not None and capacity > record.max_limit:
        raise ValueError(
            f"{record.name} capacity must be at most {record.max_limit}, "
            f"got {capacity!r} in {spec!r}"
        )
    _check_int("period_ns", period_ns, 1, MAX_PERIOD_NS, spec)
    if not record.burst:
        _check_int("interval_ns", interval_ns, 0, 0, spec)
        return
    _check_int("interval_ns", interval_ns, 1, period_ns, spec)
    if interval_ns * capacity > MAX_TOLERANCE_NS:
        raise ValueError(
            f"interval_ns * capacity must be at most 2**60, got {interval_ns!r} "
            f"* {capacity!r} in {spec!r}"
        )


def _check_int(field: str, value: object, low: int, high: int, spec: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an int, got {value!r} in {spec!r}")
    if not low <= value <= high:
        bound = f"2**{high.bit_length() - 1}" if high > 1 << 20 else str(high)
        raise ValueError(
            f"{field} must be in [{low}, {bound}], got {value!r} in {spec!r}"
        )
