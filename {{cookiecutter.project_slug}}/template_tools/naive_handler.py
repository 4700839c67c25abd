# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A naive handler, written only as the benchmark's foil. NEVER DEPLOY IT.

It does what Sagify's streaming handler does, so `make bench` can show what app.py's batching
buys: for each record, in order, one InvokeEndpoint call with that record, then one publish of
the raw prediction with the destination's single-record API (destination.py's
single_record_publisher: a GetQueueUrl and a SendMessage for a queue, a Publish for a topic, a
PutRecord for a stream, an unconditional PutItem for a table, the last two keyed by the input's
PARTITION_KEY_FIELD). The first error raises out of the handler. What that costs in production,
and why app.py does otherwise:

- records run one after another, so a batch of N takes about N times the endpoint latency;
- two or three API calls per record (2,000 to 3,000 per 1,000 predictions), each prediction
  published on its own, and for a queue a lookup whose answer never changes;
- one bad record fails the whole batch: the source delivers every record again, those already
  published are published again, and the bad one comes back until the queue's redrive moves the
  whole batch's worth of redeliveries to the dead-letter queue, or a stream's shard stops behind
  it until its retries run out or it expires, with no reason recorded anywhere;
- a table's write is unconditional, so an older event handled late or delivered again
  overwrites a newer prediction of its key;
- predictions carry no envelope (no message id, model version or timestamps).

It lives in the tooling package, which is never part of the Lambda deployment package.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

import boto3

from .destination import single_record_publisher
from .source import record_body


@cache
def _clients() -> tuple[Any, Callable[[str, str, dict[str, Any]], None]]:
    # Created once per process, as Sagify does at module level; kept lazy so the benchmark can
    # count their calls and point them at the local endpoint first.
    return boto3.client("sagemaker-runtime"), single_record_publisher(os.environ)


def reset_clients() -> None:
    """Forget the clients, so the next invocation creates them afresh (as a cold start does)."""
    _clients.cache_clear()


def handle_feature_events(event: dict[str, Any], context: Any) -> None:
    """Predict and publish each record in turn; raise on the first failure."""
    runtime, publish = _clients()
    for record in event["Records"]:
        body = record_body(record)
        response = runtime.invoke_endpoint(
            EndpointName=os.environ["ENDPOINT_NAME"],
            ContentType="application/json",
            Accept="application/json",
            Body=body,
        )
        publish(response["Body"].read().decode("utf-8"), body, record)
