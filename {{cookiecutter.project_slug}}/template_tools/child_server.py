# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A local server run as a child process that prints its URL on one line once it listens."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path

STOP_TIMEOUT_SECONDS = 5


class ChildServerError(RuntimeError):
    """The server did not start, or is not running."""


class ChildServer:
    """Starts `command`, waits for the http://127.0.0.1:PORT line it prints, and stops it.

    Stopping closes the child's stdin and sends SIGTERM, so a child may wait for either; a child
    that has not exited after STOP_TIMEOUT_SECONDS is killed.
    """

    def __init__(self, name: str, command: Sequence[str], cwd: Path) -> None:
        self.name = name
        self._command = list(command)
        self._cwd = cwd
        self._process: subprocess.Popen[str] | None = None
        self._url = ""

    @property
    def url(self) -> str:
        """The server's address, e.g. http://127.0.0.1:40123."""
        if not self._url:
            raise ChildServerError(f"the {self.name} is not running; call start() first")
        return self._url

    def start(self) -> ChildServer:
        """Start the child and wait until it prints the address it listens on."""
        self._process = subprocess.Popen(
            self._command, cwd=self._cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        first_line = self._process.stdout.readline().strip() if self._process.stdout else ""
        if not first_line.startswith("http://127.0.0.1:"):
            self.stop()
            raise ChildServerError(f"the {self.name} did not start (it printed {first_line!r})")
        self._url = first_line
        return self

    def stop(self) -> None:
        """Ask the child to exit and wait for it; safe to call when it is not running."""
        process, self._process, self._url = self._process, None, ""
        if process is None:
            return
        if process.stdin:
            process.stdin.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()

    def __enter__(self) -> ChildServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
