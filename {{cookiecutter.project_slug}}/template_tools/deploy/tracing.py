# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""X-Ray tracing is on: what the functions' roles need to send their traces."""

from __future__ import annotations

from typing import Any

# X-Ray offers no resource-level permission for sending traces, so these take "*".
TRACING_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})


def tracing_statement() -> dict[str, Any]:
    """Let a function with active tracing send its segments to X-Ray."""
    return {"Sid": "SendTraces", "Effect": "Allow", "Action": sorted(TRACING_ACTIONS), "Resource": "*"}
