"""Run a generated project's own test suite as the slow tier does: bounded in time, and told.

A suite that outlives its limit is killed with every process it started (pytest-xdist
workers, emulators), and the failure names the tests still running, read from the
`suite_progress` plugin's file, with the end of the output.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from suite_progress import PROGRESS_FILE_VARIABLE, still_running

TESTS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SuiteRun:
    """How one suite ended: its exit status (None when it was stopped at its limit) and output."""

    command: Sequence[str]
    returncode: int | None
    output: str
    running: list[str]
    timeout_seconds: float

    @property
    def passed(self) -> bool:
        """Say whether the suite finished in time and passed."""
        return self.returncode == 0

    def report(self, tail_chars: int = 6000) -> str:
        """Describe the run for a failure message: why it failed, what ran last, the output's end."""
        if self.returncode is None:
            running = "\n".join(f"  {nodeid}" for nodeid in self.running) or "  (none had started)"
            headline = f"stopped after {self.timeout_seconds:.0f} s; tests still running:\n{running}"
        else:
            headline = f"exited {self.returncode}"
        return f"{' '.join(self.command)}: {headline}\n--- output (end) ---\n{self.output[-tail_chars:]}"


def run_suite(
    command: Sequence[str], cwd: Path, timeout_seconds: float, env: Mapping[str, str] | None = None
) -> SuiteRun:
    """Run `command` in `cwd` with the progress plugin loaded; stop it and its children at the limit."""
    progress_file = cwd / ".suite-progress"
    output_file = cwd / ".suite-output"
    environment = {key: value for key, value in (env or os.environ).items() if not key.startswith("PYTEST_")}
    environment[PROGRESS_FILE_VARIABLE] = str(progress_file)
    environment["PYTEST_ADDOPTS"] = "-p suite_progress"
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS_DIR), environment.get("PYTHONPATH")]))
    with output_file.open("w", encoding="utf-8") as output:
        # A session of its own, so the whole tree (make, pytest, its workers, emulators) can be stopped.
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode: int | None = process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            returncode = None
    progress = progress_file.read_text(encoding="utf-8") if progress_file.exists() else ""
    return SuiteRun(
        command=list(command),
        returncode=returncode,
        output=output_file.read_text(encoding="utf-8", errors="replace"),
        running=still_running(progress) if returncode is None else [],
        timeout_seconds=timeout_seconds,
    )


@dataclass
class CpuHog:
    """A child process spinning on one core, and the CPU seconds it used once stopped."""

    process: subprocess.Popen[str]
    cpu_seconds: float = 0.0


# Spins until SIGTERM, then prints the CPU time it used.
_HOG = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *_: (print(time.process_time()), sys.exit(0)))\n"
    "while True:\n"
    "    pass\n"
)


@contextmanager
def cpu_hog() -> Iterator[CpuHog]:
    """Keep one core busy for the block, as other work on a CI machine or a laptop would."""
    hog = CpuHog(subprocess.Popen([sys.executable, "-c", _HOG], stdout=subprocess.PIPE, text=True))
    try:
        yield hog
    finally:
        hog.process.terminate()
        out, _ = hog.process.communicate()
        hog.cpu_seconds = float(out.strip() or 0)
