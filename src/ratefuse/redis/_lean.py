"""The client's half of the lean single decisions (lua/lean.lua): the
verdict of the general scripts, five integers, rebuilt exactly from a
lean decider's shorter reply and what the client knows (the limit, the
cost). Pure integer arithmetic, as the scripts' (Python's ``//`` is
their exact floor division).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from struct import Struct
from typing import Final, NamedTuple

from ratefuse.core.algorithms.sliding_window import retry_offset
from ratefuse.core.spec import NEVER
from ratefuse.redis._wire_limits import WireLimit

# allowed (1/0), remaining, retry_after_us (-1: never), reset_after_us,
# binding: _codec.RawReply.
Verdict = tuple[int, int, int, int, int]
# The state words per limit of each lean algorithm (lua/string_layout.lua).
WIDTHS: Final = {"gcra": 1, "fixed_window": 2, "sliding_window": 3}
# The sliding window's reply when one integer cannot hold it (lua/lean.lua).
_THREE_DOUBLES: Final = Struct("<3d")


def entry_format(field: bytes, algorithm: str) -> bytes:
    """`entry_format` is the struct format (Lua's struct.unpack) reading one
    limit's whole entry of the "string" layout, lua/string_layout.lua's
    spec.read: its field id and a space ('c<n>'), then one little-endian
    double per state word of ``algorithm``. The lean EVALSHA script takes
    it as an argument, which spares each call a number formatted."""
    if algorithm not in WIDTHS:
        return b""  # the sliding log's lean decider reads its own layout
    return b"c%d%s" % (len(field) + 1, b"<" + b"d" * WIDTHS[algorithm])


class LeanLimit:
    """`LeanLimit` rebuilds the verdict of a lean decider (lua/lean.lua)
    from its reply, exactly: v >= 0 admitted, else denied with payload
    -v - 1. gcra's payload is the backlog (reset_after); a fixed window's
    window_end * (capacity + 1) + count; a sliding window's
    (e * (capacity + 1) + prev) * (capacity + 1) + cur, or where that could
    reach 2**53 (not `whole`) the three, e or -e - 1, prev and cur, as 24
    bytes of little-endian doubles, but for an admission that leaves units
    in the window: e * (capacity + 1) + remaining;
    a sliding log's reset * (capacity + 1) + total when admitted, else
    retry, total and reset as 24 bytes of doubles (retry 0: admitted),
    total the units logged after the decision (lua/lean_sliding_log.lua).
    Every single decision comes here: `verdict` is the algorithm's own
    method, chosen once. Immutable."""

    __slots__ = ("algorithm", "capacity", "span", "tau", "verdict", "whole")

    def __init__(self, algorithm: str, capacity: int, span: int) -> None:
        self.algorithm = algorithm
        self.capacity = capacity
        self.span = span
        self.tau = capacity * span
        # Whether a sliding window's whole payload fits one integer (as
        # lean.lua's fits); where not, an integer is an admission's short form.
        self.whole = (2 * span + 1) * (capacity + 1) ** 2 < 1 << 53
        decoders = {
            "gcra": self._gcra,
            "fixed_window": self._fixed_window,
            "sliding_window": self._sliding_window,
            "sliding_log": self._sliding_log,
        }
        # `verdict(reply, cost)` is the five integers of the general
        # scripts' verdict for ``reply`` to ``cost``; ValueError (or
        # TypeError) for a reply no lean decider gives.
        self.verdict: Callable[[object, int], Verdict] = decoders[algorithm]

    @classmethod
    def of(cls, algorithm: str, specs: Sequence[WireLimit]) -> LeanLimit | None:
        """`of` is the LeanLimit of one limit (None: several limits, or
        a fixed window whose payload could reach 2**53, which the library
        then decides on its general path)."""
        if len(specs) != 1:
            return None
        spec = specs[0]
        if algorithm == "gcra":
            return cls(algorithm, spec.capacity, spec.interval_us)
        if (
            algorithm == "fixed_window"
            and (2 * spec.period_us + 1) * (spec.capacity + 1) >= 1 << 53
        ):
            return None
        return cls(algorithm, spec.capacity, spec.period_us)

    def _gcra(self, reply: object, cost: int) -> Verdict:
        if type(reply) is not int:
            raise ValueError(f"unexpected script reply {reply!r}")
        interval, tau = self.span, self.tau
        if reply >= 0:  # admitted: the backlog is at most tau
            return (1, (tau - reply) // interval, 0, reply, 0)
        backlog = -reply - 1
        remaining = (tau - backlog) // interval if backlog <= tau else 0
        if cost > self.capacity:
            return (0, remaining, NEVER, backlog, 0)
        return (0, remaining, backlog + cost * interval - tau, backlog, 0)

    def _fixed_window(self, reply: object, cost: int) -> Verdict:
        if type(reply) is not int:
            raise ValueError(f"unexpected script reply {reply!r}")
        capacity = self.capacity
        allowed = reply >= 0
        window_end, count = divmod(reply if allowed else -reply - 1, capacity + 1)
        retry = 0 if allowed else NEVER if cost > capacity else window_end
        reset = window_end if count else 0
        return (int(allowed), capacity - count, retry, reset, 0)

    def _sliding_window(self, reply: object, cost: int) -> Verdict:
        base = self.capacity + 1
        period = self.span
        if type(reply) is int and not self.whole:
            # An admission that left units in the window: its remaining,
            # and its reset from e (cur > 0).
            e, remaining = divmod(reply, base)
            return (1, remaining, 0, 3 * period - e, 0)
        if type(reply) is int:
            allowed = reply >= 0
            rest, cur = divmod(reply if allowed else -reply - 1, base)
            e, prev = divmod(rest, base)
        elif type(reply) is bytes and len(reply) == 24:
            # Doubles the script computed from integers below 2**53: exact.
            signed, prev, cur = (int(word) for word in _THREE_DOUBLES.unpack(reply))
            allowed = signed >= 0
            e = signed if allowed else -signed - 1
        else:
            raise ValueError(f"unexpected script reply {reply!r}")
        # As sliding_window.lua's step, from start - now = period - e.
        limit = self.capacity
        ahead = period - e  # start - now
        elapsed = -ahead if ahead < 0 else 0
        weighted_prev = prev * (period - elapsed)
        if allowed:
            retry = 0
        elif cost > limit:
            retry = NEVER
        else:
            retry = retry_offset(period, limit, cur, prev, cost) + ahead
        remaining = (limit * period - weighted_prev - cur * period) // period
        reset = 0
        if cur > 0:
            reset = ahead + 2 * period
        elif prev > 0:
            reset = ahead + period
        return (int(allowed), max(remaining, 0), retry, reset, 0)

    def _sliding_log(self, reply: object, cost: int) -> Verdict:
        capacity = self.capacity
        if type(reply) is int and reply >= 0:
            reset, total = divmod(reply, capacity + 1)
            return (1, capacity - total, 0, reset, 0)
        if type(reply) is bytes and len(reply) == 24:
            # Doubles the script computed from integers below 2**53: exact.
            retry, total, reset = (int(word) for word in _THREE_DOUBLES.unpack(reply))
            return (int(retry == 0), capacity - total, retry, reset, 0)
        raise ValueError(f"unexpected script reply {reply!r}")


class LeanPair(NamedTuple):
    """`LeanPair` rebuilds the verdict of the library's lean compound of
    two gcra limits (lua/lean.lua's gcra_pair_lean) from the two backlogs
    before the decision: one integer b1 * (tau2 + 1) + b2, or the two.
    ``limits`` are (capacity, interval_us) per limit."""

    limits: tuple[tuple[int, int], tuple[int, int]]

    @classmethod
    def of(cls, algorithm: str, specs: Sequence[WireLimit]) -> LeanPair | None:
        """`of` is the LeanPair of two gcra limits (None: anything else)."""
        if algorithm != "gcra" or len(specs) != 2:
            return None
        first, second = specs
        return cls(
            ((first.capacity, first.interval_us), (second.capacity, second.interval_us))
        )

    def verdict(self, reply: object, cost: int) -> Verdict:
        """`verdict` is the five integers of the general scripts' verdict
        for ``reply`` to ``cost``; ValueError for a reply it never gives."""
        capacity2, interval2 = self.limits[1]
        if type(reply) is int:
            backlogs = divmod(reply, capacity2 * interval2 + 1)
        elif isinstance(reply, list) and len(reply) == 2:
            backlogs = (reply[0], reply[1])
        else:
            raise ValueError(f"unexpected script reply {reply!r}")
        news = [
            backlog + cost * interval
            for backlog, (_, interval) in zip(backlogs, self.limits, strict=True)
        ]
        fits = [
            cost <= capacity and new <= capacity * interval
            for new, (capacity, interval) in zip(news, self.limits, strict=True)
        ]
        allowed = all(fits)
        verdicts = []
        for backlog, new, fit, (capacity, interval) in zip(
            backlogs, news, fits, self.limits, strict=True
        ):
            tau = capacity * interval
            if allowed:
                verdicts.append((True, (tau - new) // interval, 0, new))
                continue
            remaining = (tau - backlog) // interval if backlog <= tau else 0
            retry = 0 if fit else NEVER if cost > capacity else new - tau
            verdicts.append((fit, remaining, retry, backlog))
        return _combine(allowed, verdicts)


def _later(retry: int, than: int) -> bool:
    # compound.lua's later: retry delays ordered with NEVER as the latest.
    if than == NEVER:
        return False
    return retry == NEVER or retry > than


def _combine(allowed: bool, verdicts: list[tuple[bool, int, int, int]]) -> Verdict:
    # compound.lua's combine: the binding limit, the latest retry, the
    # least remaining and the latest reset.
    binding, retry = 0, 0
    remaining, reset = verdicts[0][1], verdicts[0][3]
    for index, verdict in enumerate(verdicts):
        best = verdicts[binding]
        if allowed:
            if verdict[1] < best[1]:
                binding = index
        elif not verdict[0] and (best[0] or _later(verdict[2], best[2])):
            binding = index
        if _later(verdict[2], retry):
            retry = verdict[2]
        remaining = min(remaining, verdict[1])
        reset = max(reset, verdict[3])
    return (int(allowed), remaining, retry, reset, binding)
