# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""X-Ray tracing is on: each AWS call the handler makes becomes a subsegment of its invocation.

Lambda records the invocation itself (Tracing: Active, from `"xray": true` in .chalice/config.json);
patching botocore adds one subsegment per InvokeEndpoint, SendMessageBatch, PublishBatch, PutRecords
or PutItem call, with its duration and any error.
"""

from __future__ import annotations

from aws_xray_sdk.core import patch, xray_recorder


def trace_aws_calls() -> None:
    """Patch botocore so that every client records its calls."""
    # Outside Lambda (tests, local mode) there is usually no trace to add to: record nothing
    # rather than log an error per call.
    xray_recorder.configure(context_missing="IGNORE_ERROR")
    patch(["botocore"])
