# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A naive handler, written only as the benchmark's foil. NEVER DEPLOY IT.

It does what Sagify's streaming handler does, so `make bench` can show what app.py's batching
buys: for each record, in order, one InvokeEndpoint call with that record, then
{%- if cookiecutter.output_destination == "sqs" %}
a GetQueueUrl for the predictions queue and one SendMessage with the raw prediction.
{%- elif cookiecutter.output_destination == "sns" %}
one Publish of the raw prediction to the predictions topic (Sagify publishes to SNS one record
at a time).
{%- elif cookiecutter.output_destination == "kinesis" %}
one PutRecord of the raw prediction, keyed by the input's {{ cookiecutter.partition_key_field }}.
{%- else %}
one unconditional PutItem of the raw prediction, keyed by the input's {{ cookiecutter.partition_key_field }}.
{%- endif %}
(destination.py's single_record_publisher does the publishing.) The first error raises out of
the handler. What that costs in production, and why app.py does otherwise:

- records run one after another, so a batch of N takes about N times the endpoint latency;
{%- if cookiecutter.output_destination == "sqs" %}
- three API calls per record (about 3,000 per 1,000 predictions), one of them a lookup whose
  answer never changes;
{%- else %}
- two API calls per record (about 2,000 per 1,000 predictions), each prediction published on
  its own;
{%- endif %}
{%- if cookiecutter.input_source == "kinesis" %}
- one bad record fails the whole batch: Lambda retries it from the start, the records already
  published are published again, and the shard stops behind the bad one until its retries run
  out or it expires from the stream, with no reason recorded anywhere;
{%- else %}
- one bad record fails the whole batch: Lambda redelivers every record, those already published
  are published again, and the bad one loops until the queue's redrive moves the whole batch's
  worth of redeliveries to the dead-letter queue, with no reason attached;
{%- endif %}
{%- if cookiecutter.output_destination == "dynamodb" %}
- the write is unconditional, so an older event handled late or delivered again overwrites a
  newer prediction of its key;
{%- endif %}
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
