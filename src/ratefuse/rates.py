"""Rates: ``limit`` units per ``period`` seconds, parsed and validated.

`Rate` is the public config object; `parse` reads the familiar strings
("10/s", "100 per minute", "10/s; 1000/h"); `build_specs` lowers rates and an
algorithm name to the integer specs the cores decide with, validating every
field so that a bad configuration fails at construction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from ratefuse.core.algorithms import REGISTRY

# The sliding log's cap on its limit, also public here.
from ratefuse.core.algorithms.sliding_log import (
    SLIDING_LOG_MAX_LIMIT as SLIDING_LOG_MAX_LIMIT,
)
from ratefuse.core.args import shown
from ratefuse.core.spec import MAX_CAPACITY, MAX_PERIOD_NS, LimitSpec

# The longest burst * period / limit (2**60 ns), also public here.
from ratefuse.core.spec import MAX_TOLERANCE_NS as MAX_TOLERANCE_NS

# Every algorithm name a limiter accepts, aliases included.
ALGORITHMS: Final = REGISTRY.names
DEFAULT_ALGORITHM: Final = "gcra"
# The algorithms in which ``burst`` means something; the window algorithms
# admit at most ``limit`` per window by definition.
BURST_ALGORITHMS: Final = REGISTRY.named(lambda algorithm: algorithm.burst)


@dataclass(frozen=True)
class Rate:
    """`Rate` is ``limit`` units per ``period`` seconds, at most ``burst`` at once.

    ``period`` is float seconds (or a timedelta) and defaults to 1 second;
    ``burst`` None means ``limit``. Validated at construction: ValueError
    names the field and the value.
    """

    limit: int
    period: float = 1.0
    burst: int | None = None

    def __post_init__(self) -> None:
        _check_count("limit", self.limit)
        period = self.period
        if isinstance(period, timedelta):
            period = period.total_seconds()
            object.__setattr__(self, "period", period)
        if isinstance(period, bool) or not isinstance(period, (int, float)):
            raise ValueError(f"period must be a number of seconds, got {shown(period)}")
        if not period > 0 or (isinstance(period, float) and math.isinf(period)):
            raise ValueError(
                f"period must be finite and > 0 seconds, got {shown(period)}"
            )
        # Compared before scaling: period * 1e9 overflows a float (or an
        # int's conversion to one) long before it reaches a value we refuse.
        if period > MAX_PERIOD_NS / 1e9 or not 1 <= self.period_ns <= MAX_PERIOD_NS:
            raise ValueError(
                f"period must be between 1 ns and {MAX_PERIOD_NS / 1e9:.0f} s, "
                f"got {shown(period)}"
            )
        if self.period_ns < self.limit:
            raise ValueError(
                f"rate {self} is faster than one unit per nanosecond "
                f"(limit={self.limit}, period={period!r})"
            )
        if self.burst is not None:
            _check_count("burst", self.burst)

    @property
    def capacity(self) -> int:
        """`capacity` is the most units admitted at once: burst, else limit."""
        return self.limit if self.burst is None else self.burst

    @property
    def period_ns(self) -> int:
        """`period_ns` is the period in integer nanoseconds."""
        return round(self.period * 1e9)

    @property
    def interval_ns(self) -> int:
        """`interval_ns` is period / limit, rounded up to the nanosecond so
        that the limiter never admits more than the rate."""
        return -(-self.period_ns // self.limit)

    def __str__(self) -> str:
        text = f"{self.limit}/{self.period:g}s"
        return text if self.burst is None else f"{text} (burst {self.burst})"


def _check_count(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an int, got {shown(value)}")
    if not 1 <= value <= MAX_CAPACITY:
        raise ValueError(f"{field} must be in [1, 2**40], got {shown(value)}")


_UNIT_SECONDS: Final = {
    "ms": 1e-3,
    "millisecond": 1e-3,
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
# More digits than any limit up to 2**40 has; longer ones are refused
# before int() reads them.
_MAX_LIMIT_DIGITS: Final = 20
_RATE_PATTERN: Final = re.compile(
    r"""^\s*(?P<limit>\d+)\s*(?:/|\s+per\s+)\s*
    (?P<count>\d+(?:\.\d+)?)?\s*(?P<unit>[a-z]+)\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


def parse(text: str) -> list[Rate]:
    """`parse` reads one or more rates separated by ``;`` or ``,``.

    Accepts "10/s", "10/second", "100 per minute", "5/10s", "1000 per 2 hours",
    with units ms, s, m (minute), h and d and their long names. Raises
    ValueError naming the part it could not read.
    """
    if not isinstance(text, str):
        raise ValueError(f"rate text must be a str, got {shown(text)}")
    parts = [part for part in re.split(r"[;,]", text) if part.strip()]
    if not parts:
        raise ValueError(f"rate text names no rate: {shown(text)}")
    return [_parse_one(part) for part in parts]


def _parse_one(part: str) -> Rate:
    match = _RATE_PATTERN.match(part)
    unit = match["unit"].lower() if match else ""
    if unit not in _UNIT_SECONDS and unit.endswith("s"):
        unit = unit[:-1]  # plurals: seconds, minutes, hours, days
    if match is None or unit not in _UNIT_SECONDS:
        raise ValueError(
            f"cannot parse rate {shown(part.strip())}: expected e.g. '10/s', "
            "'100 per minute' or '1000/2h'"
        )
    digits = match["limit"]
    if len(digits.lstrip("0")) > _MAX_LIMIT_DIGITS:
        # int() of thousands of digits is slow, and refused past 4,300.
        raise ValueError(f"limit must be in [1, 2**40], got {shown(part.strip())}")
    count = float(match["count"]) if match["count"] else 1.0
    return Rate(int(digits), count * _UNIT_SECONDS[unit])


RateLike = str | Rate | Sequence[str | Rate]


def to_rates(limits: RateLike) -> tuple[Rate, ...]:
    """`to_rates` accepts a rate string, a Rate, or a sequence of either;
    raises ValueError naming ``limits`` for anything else."""
    if isinstance(limits, (str, Rate)):
        items: Iterable[object] = [limits]
    elif isinstance(limits, (bytes, bytearray, memoryview)) or not isinstance(
        limits, Iterable
    ):
        # bytes are iterable, as ints: refused here, not item by item.
        hint = " (decode it to a str)" if isinstance(limits, bytes) else ""
        raise ValueError(
            "limits must be a rate string such as '10/s; 1000/h', a Rate, or a "
            f"sequence of them, got {shown(limits)}{hint}"
        )
    else:
        items = limits
    try:
        listed = list(items)
    except TypeError:  # iterable by type only (a 0-d numpy array)
        raise ValueError(
            f"limits must be a rate string, a Rate, or a sequence of them, got "
            f"{shown(limits)}"
        ) from None
    rates: list[Rate] = []
    for item in listed:
        if isinstance(item, Rate):
            rates.append(item)
        elif isinstance(item, str):
            rates.extend(parse(item))
        else:
            raise ValueError(f"limits must be rate strings or Rate, got {shown(item)}")
    if not rates:
        raise ValueError(f"limits names no rate: {shown(limits)}")
    return tuple(rates)


def canonical_algorithm(algorithm: str) -> str:
    """`canonical_algorithm` resolves aliases (token_bucket is gcra); raises
    ValueError for a name not in :data:`ALGORITHMS`."""
    return REGISTRY.by_name(algorithm).name


def build_specs(rates: Sequence[Rate], algorithm: str) -> tuple[LimitSpec, ...]:
    """`build_specs` lowers validated rates to core specs for ``algorithm``.

    Raises ValueError for a combination the algorithm cannot honour.
    """
    record = REGISTRY.by_name(algorithm)
    name = record.name
    specs = []
    for rate in rates:
        if record.burst:
            if rate.interval_ns * rate.capacity > MAX_TOLERANCE_NS:
                raise ValueError(
                    f"burst * period / limit must be at most 2**60 ns; rate {rate} "
                    f"has burst={rate.capacity}"
                )
            specs.append(
                LimitSpec(name, rate.capacity, rate.period_ns, rate.interval_ns)
            )
            continue
        if rate.burst is not None:
            raise ValueError(
                f"burst applies only to {' and '.join(BURST_ALGORITHMS)}; rate "
                f"{rate} has burst={rate.burst} with algorithm {algorithm!r}"
            )
        if record.max_limit is not None and rate.limit > record.max_limit:
            raise ValueError(
                f"{name} limit must be at most {record.max_limit} "
                f"(memory grows with it; use sliding_window), got {rate.limit}"
            )
        specs.append(LimitSpec(name, rate.limit, rate.period_ns, 0))
    return tuple(specs)
