"""Leaky bucket as a meter, the reference core.

State: the water ``level`` (in nanoseconds of drain time) and the time it was
last drained. Each unit pours T nanoseconds of water; the bucket drains one
per nanosecond and holds tau = T * capacity. Cost c is admitted iff
``level + c*T <= tau`` after draining. For non-decreasing time this makes the
same decisions as GCRA (ITU-T I.371's continuous-state leaky bucket); a time
earlier than the last drain drains nothing.
"""

from __future__ import annotations

from ._spec import NEVER, LimitSpec
from ._verdict import Verdict


def leaky_bucket_step(
    spec: LimitSpec, state: list[int], base: int, now: int, cost: int, commit: bool
) -> Verdict:
    """`leaky_bucket_step` decides ``cost`` at ``now``; consumes only if ``commit``.

    Reports the state as left: see ``gcra_step``.
    """
    interval = spec.interval_ns
    tau = interval * spec.capacity
    level, last = state[base], state[base + 1]
    if now > last:
        level = level - (now - last) if level > now - last else 0
        last = now
    if cost > spec.capacity:
        allowed, retry = False, NEVER
    else:
        poured = level + cost * interval
        allowed = poured <= tau
        retry = 0 if allowed else poured - tau
        if allowed and commit:
            level = poured
    if commit:
        state[base], state[base + 1] = level, last
    return Verdict(allowed, (tau - level) // interval, retry, level)
