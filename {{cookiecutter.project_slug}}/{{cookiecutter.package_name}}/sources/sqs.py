"""Local mode's features source: an SQS standard queue, its producer, and its Lambda-like trigger."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import boto3

from .emulator import Redelivery, ensure_dead_letter_queue, ensure_queue, queue_arn
from .lambda_trigger import FunctionConfiguration, Handler, SqsTrigger

# Why a record the trigger itself dead-lettered is there: the queue's redrive policy moved it.
TRIGGER_DEAD_LETTER_REASON = "redrive (maxReceiveCount)"
# SendMessageBatch takes at most 10 entries.
MAX_EVENTS_PER_SEND = 10


@dataclass(frozen=True)
class FeaturesSource:
    """The features queue and the dead-letter queue its redrive policy feeds."""

    url: str
    arn: str
    dead_letter_url: str


def create_source(environment: Mapping[str, str], redelivery: Redelivery) -> FeaturesSource:
    """Create (or bring up to date) FEATURES_QUEUE_NAME and DEAD_LETTER_QUEUE_NAME; idempotent."""
    sqs = boto3.client("sqs")
    dead_letter_url = ensure_dead_letter_queue(sqs, environment["DEAD_LETTER_QUEUE_NAME"])
    # An empty policy removes one left by an earlier run: failing records then come back until
    # retention drops them.
    redrive_policy = ""
    if redelivery.max_receive_count is not None:
        redrive_policy = json.dumps(
            {"deadLetterTargetArn": queue_arn(sqs, dead_letter_url), "maxReceiveCount": redelivery.max_receive_count}
        )
    url = ensure_queue(
        sqs,
        environment["FEATURES_QUEUE_NAME"],
        VisibilityTimeout=str(redelivery.visibility_timeout_seconds),
        RedrivePolicy=redrive_policy,
    )
    return FeaturesSource(url=url, arn=queue_arn(sqs, url), dead_letter_url=dead_letter_url)


class EventSender:
    """Sends event bodies as a producer would: SendMessageBatch, 10 at a time."""

    def __init__(self, source: FeaturesSource) -> None:
        self._sqs = boto3.client("sqs")
        self._url = source.url

    def send(self, bodies: Sequence[str], groups: Sequence[str]) -> list[str | None]:
        """Send up to MAX_EVENTS_PER_SEND bodies; return each one's MessageId, None where SQS refused it.

        A standard queue has no message groups: `groups` is not used.
        """
        response = self._sqs.send_message_batch(
            QueueUrl=self._url,
            Entries=[{"Id": str(position), "MessageBody": body} for position, body in enumerate(bodies)],
        )
        message_ids: list[str | None] = [None] * len(bodies)
        for entry in response.get("Successful", []):
            message_ids[int(entry["Id"])] = entry["MessageId"]
        return message_ids


def local_trigger(
    handler: Handler,
    source: FeaturesSource,
    function: FunctionConfiguration,
    *,
    batch_size: int,
    batching_window_seconds: int,
    maximum_concurrency: int,
    redelivery: Redelivery,
    records_done: Callable[[Sequence[str]], None] | None = None,
) -> SqsTrigger:
    """The event source mapping Lambda would run: the queue itself handles redelivery and redrive."""
    return SqsTrigger(
        handler,
        queue_url=source.url,
        function=function,
        batch_size=batch_size,
        batching_window_seconds=batching_window_seconds,
        maximum_concurrency=maximum_concurrency,
        records_done=records_done,
    )


def dead_lettered_message_ids(message: dict[str, Any], sent_ids: Iterable[str]) -> list[str]:
    """The features messages one dead-letter queue message stands for.

    The handler names the record in `source_message_id`; a message the queue's redrive moved
    is the record itself and keeps its MessageId.
    """
    source_id = message.get("MessageAttributes", {}).get("source_message_id", {}).get("StringValue")
    return [source_id or message["MessageId"]]


def record_message_id(record: dict[str, Any]) -> str:
    """The id a Lambda SQS record is known by: the ledger's and the partial batch response's."""
    return record["messageId"]


def record_body(record: dict[str, Any]) -> str:
    return record["body"]
