# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The local endpoint in a child process, so the model's work stays off the measuring process's clock."""

from __future__ import annotations

import sys
from pathlib import Path

from .child_server import ChildServer

# The directory that holds this package, so the child can import it whatever the caller's cwd.
_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


class EndpointProcess(ChildServer):
    """`python -m <package>.endpoint_server` serving `model_dir` on 127.0.0.1 with a fixed latency."""

    def __init__(self, model_dir: Path, latency_ms: int) -> None:
        self.model_dir = Path(model_dir)
        self.latency_ms = latency_ms
        command = [sys.executable, "-m", f"{__package__}.endpoint_server", "--model-dir", str(self.model_dir.resolve())]
        command += ["--port", "0", "--latency-ms", str(latency_ms)]
        super().__init__("endpoint server", command, _PACKAGE_PARENT)
