"""A plain progress line for long work (back-fill, report builds): no dependency, no TTY tricks
beyond a carriage return, and one final line when stderr is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: float, unit: str = "", stream: TextIO | None = None):
        self.label = label
        self.total = max(total, 1e-9)
        self.unit = unit
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last = 0.0
        self.done = 0.0

    def update(self, done: float, note: str = "") -> None:
        self.done = done
        now = time.monotonic()
        if self.tty and now - self._last >= 0.1:
            self._last = now
            self.stream.write("\r" + self._line(note) + "\033[K")
            self.stream.flush()

    def finish(self, note: str = "") -> None:
        self.done = self.total
        end = "\r" if self.tty else ""
        self.stream.write(end + self._line(note) + ("\033[K" if self.tty else "") + "\n")
        self.stream.flush()

    def _line(self, note: str) -> str:
        frac = min(1.0, self.done / self.total)
        bar = "#" * int(frac * 30)
        elapsed = time.monotonic() - self.started
        tail = f" {note}" if note else ""
        return f"{self.label} [{bar:<30}] {frac:4.0%} ({elapsed:.1f}s){tail}"
