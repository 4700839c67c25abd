# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The prediction topic in local mode: create it in the emulator, read what arrives, refuse some publishes.

SNS keeps nothing to read back, so a queue named after the topic with "-tail" subscribes to it
with raw message delivery (the body is the envelope, the SNS message attributes become SQS
message attributes) and the reader takes the predictions off that queue. boto3 finds the
emulator through AWS_ENDPOINT_URL (see emulator.py).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import boto3

from chalicelib.template_runtime.aws_limits import SQS_MAX_BATCH_ENTRIES

from .deploy.names import QUEUE_NAME_LIMIT, bounded_name
from .sink_faults import SNS_PUBLISH_BATCH, refuse_batch_entries

# SQS long polls for at most 20 seconds and returns at most 10 messages per receive.
MAX_WAIT_SECONDS = 20
# The call that publishes predictions (service.Operation, as botocore names its events): the
# fault plan's kill point "publishing" strikes after the first one.
# How the benchmark names this destination, and the handler's publishing API beside the naive handler's.
DESTINATION_LABEL = "predictions topic (SNS)"
PUBLISH_API = "PublishBatch vs Publish"
PUBLISH_OPERATION = "sns.PublishBatch"
# The benchmark's publish target: one batch call per batch of 10 records, and a little room for a
# batch split by size.
PUBLISH_LIMIT_PER_1000 = 110
PUBLISH_TARGET = "<= 110 (both modes)"
# What `make tail` does to the predictions it shows, printed in its --help (tail.py).
TAIL_NOTE = """\
Tail reads its own queue, <topic>-tail, subscribed to the topic (it creates and subscribes it on
first use), so the topic's subscribers still get every prediction. The queue keeps collecting
predictions between tails (SQS keeps them 4 days): the first lines may be old ones. Delete the
queue when nobody tails any more.
"""


def tail_queue_name(topic_name: str) -> str:
    """The queue that follows the topic for the reader: `<topic>-tail`, cut and hashed when a topic
    name (up to 256 characters) would make it longer than a queue name's 80."""
    return bounded_name(f"{topic_name}-tail", QUEUE_NAME_LIMIT)


def create_destination(environment: Mapping[str, str]) -> None:
    """Create the topic named PREDICTIONS_TOPIC_NAME and its tail queue, subscribed; idempotent."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_name = environment["PREDICTIONS_TOPIC_NAME"]
    # CreateTopic and CreateQueue return the existing one; Subscribe too, for the same endpoint.
    topic_arn = sns.create_topic(Name=topic_name)["TopicArn"]
    queue_url = sqs.create_queue(QueueName=tail_queue_name(topic_name))["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # What AWS needs before a topic can deliver to a queue; emulators mostly let it through anyway.
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})
    sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
        ReturnSubscriptionArn=True,
    )


class PredictionReader:
    """Takes the prediction envelopes off the topic's tail queue: each is read once, then deleted."""

    # Every prediction is kept, so none is ever superseded (a table's reader says which were).
    newer_prediction_stored = None

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._sqs = boto3.client("sqs")
        queue_name = tail_queue_name(environment["PREDICTIONS_TOPIC_NAME"])
        self._queue_url = self._sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]

    def read(self, wait_seconds: float = 0) -> list[dict[str, Any]]:
        """The envelopes that arrived since the last read; waits up to `wait_seconds` for the first."""
        envelopes: list[dict[str, Any]] = []
        wait = min(math.ceil(wait_seconds), MAX_WAIT_SECONDS)
        while messages := self._receive_and_delete(wait):
            envelopes.extend(json.loads(message["Body"]) for message in messages)
            wait = 0
        return envelopes

    def _receive_and_delete(self, wait_seconds: int) -> list[dict[str, Any]]:
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url, MaxNumberOfMessages=SQS_MAX_BATCH_ENTRIES, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        if messages:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]} for n, message in enumerate(messages)
                ],
            )
        return messages


def refuse_predictions(events: Any, refuse: Callable[[dict[str, str]], bool]) -> AbstractContextManager[None]:
    """Make PublishBatch refuse the entries `refuse` picks, as SNS reports a partial failure.

    `refuse` gets {"body": the message, "group": ""} (a standard topic has no groups), once per
    entry and attempt. `events` is a client's or a session's event system: see sink_faults.
    """
    return refuse_batch_entries(
        events, SNS_PUBLISH_BATCH, lambda entry: refuse({"body": entry["Message"], "group": ""})
    )


def single_record_publisher(environment: Mapping[str, str]) -> Callable[[str, str, dict[str, Any]], None]:
    """How a naive handler publishes (naive_handler.py, the benchmark's foil): `publish(prediction,
    body, record)` sends the prediction alone with Publish, as Sagify publishes to SNS.

    The client is created here, once, and the topic ARN built here from the caller's identity, as
    the handler builds it (one GetCallerIdentity per process, not per record).
    """
    sns = boto3.client("sns")
    caller_arn = boto3.client("sts").get_caller_identity()["Arn"]
    partition, account = caller_arn.split(":")[1], caller_arn.split(":")[4]
    topic_arn = f"arn:{partition}:sns:{sns.meta.region_name}:{account}:{environment['PREDICTIONS_TOPIC_NAME']}"

    def publish(prediction: str, body: str, record: dict[str, Any]) -> None:
        sns.publish(TopicArn=topic_arn, Message=prediction)

    return publish


def add_tail_options(parser: argparse.ArgumentParser) -> None:
    """`make tail` needs no option of its own here: it takes nothing away from the consumers."""


def tail_refusal(args: argparse.Namespace) -> str | None:
    """Tail may always start here (None): it takes nothing away from the consumers."""
    return None


def prepare_tail(environment: Mapping[str, str]) -> None:
    """Create the tail queue and its subscription if they are missing; the topic exists already."""
    create_destination(environment)
