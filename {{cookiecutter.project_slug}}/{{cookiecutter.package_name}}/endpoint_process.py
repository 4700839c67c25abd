"""The local endpoint in a child process, so the model's work stays off the measuring process's clock."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

# The directory that holds this package, so the child can import it whatever the caller's cwd.
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_SECONDS = 5


class EndpointProcessError(RuntimeError):
    """The endpoint server did not start."""


class EndpointProcess:
    """`python -m <package>.endpoint_server` serving `model_dir` on 127.0.0.1 with a fixed latency."""

    def __init__(self, model_dir: Path, latency_ms: int) -> None:
        self.model_dir = Path(model_dir)
        self.latency_ms = latency_ms
        self._process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> EndpointProcess:
        """Start the server and wait for the URL it prints once it listens."""
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                f"{__package__}.endpoint_server",
                "--model-dir",
                str(self.model_dir.resolve()),
                "--port",
                "0",
                "--latency-ms",
                str(self.latency_ms),
            ],
            cwd=_PACKAGE_PARENT,
            stdout=subprocess.PIPE,
            text=True,
        )
        first_line = self._process.stdout.readline().strip() if self._process.stdout else ""
        if not first_line.startswith("http://127.0.0.1:"):
            self.stop()
            raise EndpointProcessError(f"the endpoint server did not start (it printed {first_line!r})")
        self.url = first_line
        return self

    def stop(self) -> None:
        """Ask the server to stop (it serves until SIGTERM) and wait for it."""
        process, self._process, self.url = self._process, None, ""
        if process is None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()

    def __enter__(self) -> EndpointProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
