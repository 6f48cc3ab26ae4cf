"""What one configuration may hold and make the registry allocate.

A configuration is input a deployment reads at run time (a file an
operator, a tool or a template writes), so its size is bounded before it is
parsed and what its entries would allocate is bounded before anything is
built: a 100 MB file must not cost minutes and gigabytes, and one
``window_buckets = 16777216`` must not allocate hundreds of megabytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from ratefuse.core.algorithms import REGISTRY

if TYPE_CHECKING:
    from ratefuse.core.breaker.config import BreakerConfig
    from ratefuse.core.spec import LimitSpec

# MAX_CONFIG_BYTES bounds a TOML file `Registry.from_toml` and `reload` read
# (1 MiB: about 10,000 entries of the README's size).
MAX_CONFIG_BYTES: Final = 1 << 20
# MAX_ENTRIES bounds the named tables of one section (backends, limiters,
# breakers).
MAX_ENTRIES: Final = 10_000
# MAX_RATES bounds the limits of one limiter ("10/s; 1000/h" is two).
MAX_RATES: Final = 64
# MAX_WINDOW_SLOTS bounds what a configuration's windows allocate at once,
# summed over every entry: a breaker's count window holds ``window_size``
# outcomes and its time window ``window_buckets`` buckets (about 24 bytes
# each), a sliding_log limit one entry per unit of its limit (16 bytes). The
# sum is at most 2**21 slots, about 50 MB.
MAX_WINDOW_SLOTS: Final = 1 << 21
SLIDING_LOG: Final = REGISTRY.by_name("sliding_log").name


def breaker_slots(rules: BreakerConfig) -> int:
    """`breaker_slots` is how many window slots a breaker of ``rules``
    allocates when it is built."""
    if rules.window_type == "count":
        return int(rules.window_size)
    return int(rules.window_buckets)


def limiter_slots(specs: tuple[LimitSpec, ...]) -> int:
    """`limiter_slots` is how many log entries the sliding_log limits of
    ``specs`` allocate for one subject (0 for every other algorithm)."""
    return sum(spec.capacity for spec in specs if spec.algorithm == SLIDING_LOG)


def check_slots(slots: Mapping[str, int], errors: list[str]) -> None:
    """`check_slots` records an error naming the largest entries when the
    window slots of ``slots`` (path -> slots) exceed MAX_WINDOW_SLOTS."""
    total = sum(slots.values())
    if total <= MAX_WINDOW_SLOTS:
        return
    largest = sorted(slots.items(), key=lambda item: -item[1])[:3]
    named = ", ".join(f"{path} {count}" for path, count in largest)
    errors.append(
        f"config: its windows would allocate {total} slots, more than the "
        f"{MAX_WINDOW_SLOTS} one config may (largest: {named}); use smaller "
        "window_size, window_buckets or sliding_log limits"
    )
