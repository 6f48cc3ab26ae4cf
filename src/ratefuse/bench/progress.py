"""`Progress`: a run's progress on stderr, redrawn in place on a terminal
and one line per finished step elsewhere (a CI log or a file gets no
carriage returns)."""

from __future__ import annotations

import sys
from typing import TextIO


class Progress:
    """`Progress` reports the steps of ``label`` on ``stream`` (None:
    sys.stderr at each call). On a terminal `step` redraws one line; on
    anything else only `done` writes, one line. Not thread-safe."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self._stream = stream
        self._drawn = False

    @property
    def stream(self) -> TextIO:
        """`stream` is where the progress goes."""
        return sys.stderr if self._stream is None else self._stream

    @property
    def live(self) -> bool:
        """`live` is whether the stream is a terminal (redrawn in place)."""
        isatty = getattr(self.stream, "isatty", None)
        return bool(isatty is not None and isatty())

    def step(self, text: str) -> None:
        """`step` shows ``text`` as the current step (terminals only)."""
        if self.live:
            print(
                f"\r\033[K  {self.label}: {text}", end="", file=self.stream, flush=True
            )
            self._drawn = True

    def done(self, text: str) -> None:
        """`done` ends the progress with ``text`` on a line of its own."""
        prefix = "\r\033[K" if self._drawn and self.live else ""
        print(f"{prefix}  {self.label}: {text}", file=self.stream, flush=True)
        self._drawn = False

    def repeats(self, done: int, total: int) -> None:
        """`repeats` is a progress callback for ``measure``: repeat
        ``done`` of ``total``."""
        if done < total:
            self.step(f"repeat {done}/{total}")
        else:
            self.done(f"{total} repeat{'' if total == 1 else 's'}")
