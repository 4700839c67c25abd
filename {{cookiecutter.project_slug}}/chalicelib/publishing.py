"""Sends messages to an SQS queue with SendMessageBatch and says exactly which ones failed."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

# SendMessageBatch takes at most 10 entries and 1 MiB in all, message attributes included.
MAX_ENTRIES_PER_BATCH = 10
MAX_BATCH_BYTES = 1_048_576


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send; `key` is how the caller recognises it among the failures."""

    key: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)

    def size(self) -> int:
        """Bytes SQS counts against its limits: the body plus each attribute's name, type and value."""
        attribute_bytes = sum(
            len(name) + len("String") + len(value.encode()) for name, value in self.attributes.items()
        )
        return len(self.body.encode()) + attribute_bytes


def plan_batches(messages: Sequence[OutgoingMessage]) -> list[list[OutgoingMessage]]:
    """Split messages, in order, into SendMessageBatch calls within the entry and byte limits."""
    batches: list[list[OutgoingMessage]] = []
    current: list[OutgoingMessage] = []
    current_bytes = 0
    for message in messages:
        size = message.size()
        if current and (len(current) == MAX_ENTRIES_PER_BATCH or current_bytes + size > MAX_BATCH_BYTES):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(message)
        current_bytes += size
    if current:
        batches.append(current)
    return batches


def _entry(entry_id: str, message: OutgoingMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
    if message.attributes:
        entry["MessageAttributes"] = {
            name: {"DataType": "String", "StringValue": value} for name, value in message.attributes.items()
        }
    return entry


class QueuePublisher:
    """Publishes to one queue whose URL is looked up once, on first use."""

    def __init__(self, sqs_client: Any, queue_name: str, executor: Executor) -> None:
        self._sqs = sqs_client
        self._queue_name = queue_name
        self._executor = executor
        self._queue_url: str | None = None

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = self._sqs.get_queue_url(QueueName=self._queue_name)["QueueUrl"]
        return self._queue_url

    def send(self, messages: Sequence[OutgoingMessage]) -> dict[str, str]:
        """Send every message; return {key: reason} for those SQS did not accept."""
        if not messages:
            return {}
        queue_url = self.queue_url
        failed: dict[str, str] = {}
        for outcome in self._executor.map(lambda batch: self._send_batch(queue_url, batch), plan_batches(messages)):
            failed.update(outcome)
        return failed

    def _send_batch(self, queue_url: str, batch: list[OutgoingMessage]) -> dict[str, str]:
        # Entry ids only need to be unique within one call; positions keep them valid whatever the keys are.
        entries = [_entry(str(position), message) for position, message in enumerate(batch)]
        try:
            response = self._sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as error:
            return {message.key: f"SendMessageBatch failed: {error}" for message in batch}
        return {
            batch[int(entry["Id"])].key: f"{entry.get('Code', 'Failed')}: {entry.get('Message', '')}".strip()
            for entry in response.get("Failed", [])
        }
