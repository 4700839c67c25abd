# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Waiting for AWS to finish something, with a line per poll showing elapsed time and status."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field


class WaitTimedOut(TimeoutError):
    """The resource did not reach a final status in time; the message says which and how to go on."""


@dataclass
class Poller:
    """Polls a status until it is final. Tests pass poll_seconds=0 and a fake clock."""

    poll_seconds: float = 15.0
    timeout_seconds: float = 1800.0
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    say: Callable[[str], None] = field(default=lambda line: print(line, flush=True))

    def wait(self, label: str, read_status: Callable[[], str], final: Collection[str]) -> str:
        """Read the status until it is one of `final`; return it."""
        started = self.clock()
        while True:
            status = read_status()
            elapsed = self.clock() - started
            self.say(f"  [{elapsed:5.0f}s] {label}: {status}")
            if status in final:
                return status
            if elapsed >= self.timeout_seconds:
                raise WaitTimedOut(
                    f"{label} is still {status} after {elapsed:.0f} s; it goes on in AWS. Check it in the "
                    "console, then run the command again (it picks up where AWS is)."
                )
            self.sleep(self.poll_seconds)
