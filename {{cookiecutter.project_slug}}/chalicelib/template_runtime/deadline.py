# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Knows when an invocation must stop starting work so it can still report what it did."""

from __future__ import annotations

import time
from typing import Protocol


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class Deadline:
    """The point, before Lambda's timeout, after which no new endpoint call may start.

    Work not started by then is reported as a batch item failure, so SQS delivers it again
    instead of Lambda killing the invocation and redelivering the whole batch, successes
    included.
    """

    def __init__(self, context: LambdaContext | None, reserve_ms: int) -> None:
        remaining_ms = context.get_remaining_time_in_millis() if context is not None else None
        self._stop_at = None if remaining_ms is None else time.monotonic() + (remaining_ms - reserve_ms) / 1000

    def allows_new_work(self) -> bool:
        return self._stop_at is None or time.monotonic() < self._stop_at
