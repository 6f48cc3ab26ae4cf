"""A logging handler that keeps the records ratefuse emits, by event."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator


class Events(logging.Handler):
    """`Events` keeps every record that carries an ``event_name``."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "event_name"):
            self.records.append(record)

    def named(self, event: str) -> list[logging.LogRecord]:
        """`named` is the records of ``event``, in order."""
        return [r for r in self.records if r.event_name == event]  # type: ignore[attr-defined]


@contextlib.contextmanager
def capture(logger: str = "ratefuse", level: int = logging.DEBUG) -> Iterator[Events]:
    """`capture` attaches an `Events` handler to ``logger`` at ``level``
    and restores the logger's level on exit."""
    target = logging.getLogger(logger)
    handler = Events()
    previous = target.level
    target.setLevel(level)
    target.addHandler(handler)
    try:
        yield handler
    finally:
        target.removeHandler(handler)
        target.setLevel(previous)
