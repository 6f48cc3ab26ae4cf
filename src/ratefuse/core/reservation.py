"""`Reservation`: units set aside by a ``reserve``, shared by every engine
(compiled or not) and built by ``make_reservation`` in ``_decision_py`` and
``_decision_c``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratefuse.core.decision import Decision

# `Refund` gives reserved units back; its argument is ``now`` in ns on the
# limiter's clock (None: read the clock).
Refund = Callable[[int | None], None]


class Reservation:
    """`Reservation` is ``cost`` units set aside by ``reserve``.

    ``ok``: the units are reserved; use them after ``delay`` seconds.
    Otherwise nothing was taken and ``delay`` is how long the units would
    have needed (``inf``: they never can be admitted). ``decision`` is the
    decision behind it. `cancel` gives back what is left (exactly for gcra;
    see each algorithm's refund). Thread-safe; cancel is idempotent.
    """

    __slots__ = ("_refund", "decision", "delay", "ok")

    def __init__(
        self,
        ok: bool,
        delay: float,
        decision: Decision,
        refund: Refund | None,
    ) -> None:
        self.ok = ok
        self.delay = delay
        self.decision = decision
        self._refund = refund if ok else None

    def cancel(self, now: int | None = None) -> None:
        """`cancel` gives the reserved units back (no-op if not ``ok`` or
        already cancelled); ``now`` is in ns on the limiter's clock."""
        refund, self._refund = self._refund, None
        if refund is not None:
            refund(now)

    def __repr__(self) -> str:
        return f"Reservation(ok={self.ok}, delay={self.delay!r})"
