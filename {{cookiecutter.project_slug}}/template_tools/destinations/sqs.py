# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The prediction queue in local mode: create it in the emulator, read what arrives, refuse some sends.

boto3 finds the emulator through AWS_ENDPOINT_URL (see emulator.py), so these functions work
against whichever emulator that names.
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

from .operator_stage import on_emulator
from .sink_faults import refuse_send_entries

# SQS long polls for at most 20 seconds and returns at most 10 messages per receive.
MAX_WAIT_SECONDS = 20
# The call that publishes predictions (service.Operation, as botocore names its events): the
# fault plan's kill point "publishing" strikes after the first one.
# How the benchmark names this destination, and the handler's publishing API beside the naive handler's.
DESTINATION_LABEL = "predictions queue (SQS)"
PUBLISH_API = "SendMessageBatch vs SendMessage"
PUBLISH_OPERATION = "sqs.SendMessageBatch"
# The benchmark's publish target: one batch call per batch of 10 records, and a little room for a
# batch split by size.
PUBLISH_LIMIT_PER_1000 = 110
PUBLISH_TARGET = "<= 110 (both modes)"
# What `make tail` does to the predictions it shows, printed in its --help (tail.py).
TAIL_NOTE = """\
The predictions queue has one reader: tail TAKES THE PREDICTIONS IT SHOWS OFF THE QUEUE (it
receives and deletes them), so the consumer never gets them. Against AWS it refuses to start
unless given --consume (`make tail CONSUME=1`): tail a dev stage, or one no consumer reads yet;
never a queue a team depends on. Against the emulator (LOCAL=1) it needs no flag.
"""


def create_destination(environment: Mapping[str, str]) -> None:
    """Create the queue named PREDICTIONS_QUEUE_NAME (FIFO if the name ends in .fifo); idempotent."""
    name = environment["PREDICTIONS_QUEUE_NAME"]
    attributes = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    boto3.client("sqs").create_queue(QueueName=name, Attributes=attributes)


class PredictionReader:
    """Takes the prediction envelopes off the queue: each is read once, then deleted."""

    # Every prediction is kept, so none is ever superseded (a table's reader says which were).
    newer_prediction_stored = None

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._sqs = boto3.client("sqs")
        self._queue_url = self._sqs.get_queue_url(QueueName=environment["PREDICTIONS_QUEUE_NAME"])["QueueUrl"]

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
    """Make SendMessageBatch refuse the entries `refuse` picks, as SQS reports a partial failure.

    `refuse` gets {"body": the message body, "group": its MessageGroupId or ""}, once per entry
    and attempt. It sees every SendMessageBatch of the clients `events` reaches, dead letters
    included (their body is the original record, not an envelope). `events` is a client's or a
    session's event system: see sink_faults.
    """
    return refuse_send_entries(
        events, lambda entry: refuse({"body": entry["MessageBody"], "group": entry.get("MessageGroupId", "")})
    )


def single_record_publisher(environment: Mapping[str, str]) -> Callable[[str, str, dict[str, Any]], None]:
    """How a naive handler publishes (naive_handler.py, the benchmark's foil): `publish(prediction,
    body, record)` looks the queue up with GetQueueUrl, then sends the prediction alone with
    SendMessage. The client is created here, once.

    On a FIFO queue (only with a FIFO features queue) the prediction goes in its record's message
    group, deduplicated by the record's message id, or SQS would refuse it.
    """
    sqs = boto3.client("sqs")
    queue_name = environment["PREDICTIONS_QUEUE_NAME"]

    def publish(prediction: str, body: str, record: dict[str, Any]) -> None:
        queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
        fifo = (
            {"MessageGroupId": record["attributes"]["MessageGroupId"], "MessageDeduplicationId": record["messageId"]}
            if queue_name.endswith(".fifo")
            else {}
        )
        sqs.send_message(QueueUrl=queue_url, MessageBody=prediction, **fifo)

    return publish


def add_tail_options(parser: argparse.ArgumentParser) -> None:
    """`make tail`'s --consume: tail takes what it shows off the queue, so against AWS it must be asked for."""
    parser.add_argument(
        "--consume",
        action="store_true",
        help="take the predictions shown off the queue (needed against AWS: the consumer never gets them)",
    )


def tail_refusal(args: argparse.Namespace) -> str | None:
    """Why `make tail` must not start, or None: against AWS, without --consume, it would take the
    consumer's predictions."""
    if args.consume or on_emulator():
        return None
    return (
        "tail takes the predictions it shows off the queue, so its consumer never gets them; "
        "on a queue no consumer reads (a dev stage), run `make tail CONSUME=1`"
    )


def prepare_tail(environment: Mapping[str, str]) -> None:
    """Nothing to set up: tail reads the predictions queue itself."""
