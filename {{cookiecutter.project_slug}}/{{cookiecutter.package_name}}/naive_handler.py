"""A naive SQS handler, written only as the benchmark's foil. NEVER DEPLOY IT.

It does what Sagify's streaming handler does, so `make bench` can show what app.py's batching
buys: for each record, in order, one InvokeEndpoint call with that record, a GetQueueUrl for
the predictions queue, and one SendMessage with the raw prediction. The first error raises out
of the handler. What that costs in production, and why app.py does otherwise:

- records run one after another, so a batch of N takes about N times the endpoint latency;
- three API calls per record (about 3,000 per 1,000 predictions), one of them a lookup whose
  answer never changes;
- one bad record fails the whole batch: Lambda redelivers every record, those already published
  are published again, and the bad one loops until the queue's redrive moves the whole batch's
  worth of redeliveries to the dead-letter queue, with no reason attached;
- predictions carry no envelope (no message id, model version or timestamps).

It lives in the tooling package, which is never part of the Lambda deployment package.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3


@cache
def _clients() -> tuple[Any, Any]:
    # Created once per process, as Sagify does at module level; kept lazy so the benchmark can
    # count their calls and point them at the local endpoint first.
    return boto3.client("sagemaker-runtime"), boto3.client("sqs")


def reset_clients() -> None:
    """Forget the clients, so the next invocation creates them afresh (as a cold start does)."""
    _clients.cache_clear()


def handle_feature_events(event: dict[str, Any], context: Any) -> None:
    """Predict and publish each record in turn; raise on the first failure."""
    runtime, sqs = _clients()
    for record in event["Records"]:
        response = runtime.invoke_endpoint(
            EndpointName=os.environ["ENDPOINT_NAME"],
            ContentType="application/json",
            Accept="application/json",
            Body=record["body"],
        )
        prediction = response["Body"].read().decode("utf-8")
        queue_url = sqs.get_queue_url(QueueName=os.environ["PREDICTIONS_QUEUE_NAME"])["QueueUrl"]
        sqs.send_message(QueueUrl=queue_url, MessageBody=prediction)
