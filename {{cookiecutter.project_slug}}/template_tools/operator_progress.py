# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Progress on stderr for local mode and the operator commands: a redrawn line on a terminal, plain lines in a log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

# A redrawn line changes at most this often; a log (no terminal) gets a line per 10 % or this often.
REDRAW_SECONDS = 0.1
LOG_EVERY_SECONDS = 5.0


class ProgressLine:
    """When to show a line of progress, and how: the one place both rules live.

    On a terminal the line is redrawn in place, at most every REDRAW_SECONDS (the last one, at
    the total, always). Without one (logs, CI), a plain line per 10 % of the total or per
    LOG_EVERY_SECONDS, with no carriage returns or escape codes.
    """

    def __init__(self, total: int | None, stream: TextIO | None) -> None:
        self._total = total
        self._stream = stream
        self._interactive = bool(stream and stream.isatty())
        self._started = time.monotonic()
        self._last_shown = 0.0
        self._last_tenth = -1

    def update(self, done: int, render: Callable[[float], str]) -> None:
        """Show `render(seconds since the start)` for `done` of the total, unless it is too soon."""
        if self._stream is None:
            return
        now = time.monotonic()
        # Past an approximate total (a queue's depth), only the time brings a new line.
        tenth = min(done * 10 // self._total, 10) if self._total else -1
        finished = bool(self._total) and done >= self._total
        if self._interactive:
            if now - self._last_shown < REDRAW_SECONDS and not finished:
                return
        elif tenth == self._last_tenth and now - self._last_shown < LOG_EVERY_SECONDS:
            return
        self._last_shown, self._last_tenth = now, tenth
        line = render(now - self._started)
        self._stream.write(f"\r{line}\x1b[K" if self._interactive else f"{line}\n")
        self._stream.flush()

    def close(self) -> None:
        """End the redrawn line so what follows starts on its own."""
        if self._stream is not None and self._interactive:
            self._stream.write("\n")
            self._stream.flush()


class Progress:
    """An operator command's `done` of `total` (None: unknown, e.g. a queue's approximate depth) with a rate."""

    def __init__(self, what: str, total: int | None, stream: TextIO | None) -> None:
        self._what = what
        self._total = total
        self._line = ProgressLine(total, stream)

    def show(self, done: int, detail: str = "") -> None:
        def render(elapsed: float) -> str:
            rate = f", {done / elapsed:.0f}/s" if elapsed > 0 else ""
            of_total = f"/{self._total}" if self._total else ""
            return f"{self._what}: {done}{of_total}{rate}{', ' + detail if detail else ''}"

        self._line.update(done, render)

    def close(self) -> None:
        """End the redrawn line so what follows starts on its own."""
        self._line.close()
