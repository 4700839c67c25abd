"""Progress of an operator command on stderr: one redrawn line on a terminal, a plain line now and then otherwise."""

from __future__ import annotations

import time
from typing import TextIO

# A redrawn line changes at most this often; a log (no terminal) gets a line per 10 % or this often.
REDRAW_SECONDS = 0.1
LOG_EVERY_SECONDS = 5.0


class Progress:
    """`done` of `total` (None: unknown, e.g. a queue's approximate depth) with a rate."""

    def __init__(self, what: str, total: int | None, stream: TextIO | None) -> None:
        self._what = what
        self._total = total
        self._stream = stream
        self._interactive = bool(stream and stream.isatty())
        self._started = time.monotonic()
        self._last_shown = 0.0
        self._last_tenth = -1

    def show(self, done: int, detail: str = "") -> None:
        if self._stream is None:
            return
        now = time.monotonic()
        # Past an approximate total (a queue's depth), only the time brings a new line.
        tenth = min(done * 10 // self._total, 10) if self._total else -1
        if self._interactive:
            if now - self._last_shown < REDRAW_SECONDS:
                return
        elif tenth == self._last_tenth and now - self._last_shown < LOG_EVERY_SECONDS:
            return
        self._last_shown, self._last_tenth = now, tenth
        elapsed = now - self._started
        rate = f", {done / elapsed:.0f}/s" if elapsed > 0 else ""
        of_total = f"/{self._total}" if self._total else ""
        line = f"{self._what}: {done}{of_total}{rate}{', ' + detail if detail else ''}"
        self._stream.write(f"\r{line}\x1b[K" if self._interactive else f"{line}\n")
        self._stream.flush()

    def close(self) -> None:
        """End the redrawn line so what follows starts on its own."""
        if self._stream is not None and self._interactive:
            self._stream.write("\n")
            self._stream.flush()
