"""A pytest plugin for the baked suites: writes which tests started and finished to a file.

The slow tier loads it into each generated project's pytest run (`-p suite_progress`), so a
suite that outlives its time limit can be reported with the tests still running, not only with
the output so far, which under pytest-xdist names finished tests only.
"""

from __future__ import annotations

import os
from typing import IO, Any

import pytest

PROGRESS_FILE_VARIABLE = "SUITE_PROGRESS_FILE"

_log: IO[str] | None = None


def pytest_configure(config: pytest.Config) -> None:
    """Open the progress file in the process that reports, not in pytest-xdist's workers."""
    global _log
    path = os.environ.get(PROGRESS_FILE_VARIABLE)
    if path and not hasattr(config, "workerinput"):
        _log = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed in unconfigure


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the progress file."""
    global _log
    if _log is not None:
        _log.close()
        _log = None


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    """Record that a test started (pytest-xdist relays its workers' starts to the controller)."""
    if _log is not None:
        _log.write(f"start {nodeid}\n")


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    """Record that a test finished, whatever its outcome."""
    if _log is not None:
        _log.write(f"finish {nodeid}\n")


def still_running(progress: str) -> list[str]:
    """List the tests a progress file says started and did not finish, in the order they started."""
    started: dict[str, None] = {}
    for line in progress.splitlines():
        event, _, nodeid = line.partition(" ")
        if event == "start":
            started[nodeid] = None
        elif event == "finish":
            started.pop(nodeid, None)
    return list(started)
