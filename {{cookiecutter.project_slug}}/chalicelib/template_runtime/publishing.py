# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Publishing messages in batches, concurrently, and saying exactly which ones failed; the SQS publisher.

A destination (chalicelib/destination.py) is a `Sink`: it takes a list of messages, sends them
with its service's batch API and names the ones the service did not accept, each with a
RecordFailure that says whether sending it again could succeed (failures.py). A sink never raises
for an AWS error: a call that fails as a whole fails each of its messages, and the caller decides
what to retry and what to dead-letter.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from .aws_limits import SQS_GROUP_ID, SQS_MAX_BATCH_BYTES, SQS_MAX_BATCH_ENTRIES, SQS_MAX_GROUP_ID_CHARS
from .deadline import DEFAULT_RESERVE_MS, CallBudget, publishing_budget
from .failures import RecordFailure, batch_entry_failure, classify_sink_error

# botocore's default pool. Connections are opened only when needed, and a client keeps one for
# each thread of the handler's pool (ENDPOINT_CONCURRENCY) when that is more, so every thread can
# call at once without opening and dropping connections.
MIN_POOL_CONNECTIONS = 10


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send; `key` is how the caller recognises it among the failures."""

    key: str
    body: str
    attributes: dict[str, str] = field(default_factory=dict)
    # What keeps messages together: the FIFO MessageGroupId, the Kinesis partition key, the
    # DynamoDB key value. "" when nothing does.
    group: str = ""
    # When the event happened, in epoch milliseconds: a keyed table keeps the newest one.
    event_time_ms: int | None = None
    # Which of two events of one key with the same event_time_ms is the newer: the greater one,
    # as text (feature_events.sequence_order). "" reads as the key.
    source_order: str = ""

    def size(self) -> int:
        """Bytes SQS and SNS count against their limits: the body plus each attribute's name, type and value."""
        attribute_bytes = sum(
            len(name) + len("String") + len(value.encode()) for name, value in self.attributes.items()
        )
        return len(self.body.encode()) + attribute_bytes


class Sink(Protocol):
    """Where messages go: a queue, a topic, a stream or a table."""

    def send(self, messages: Sequence[OutgoingMessage]) -> dict[str, RecordFailure]:
        """Send every message; return {key: failure} for each one not accepted. Never raises for AWS errors."""
        ...

    def key_problem(self, group: str) -> str:
        """Why the service would refuse `group` as a message's group or key on every attempt; "" when it takes it."""
        ...


def aws_client(service: str, *, budget: CallBudget | None = None, pool_size: int | None = None) -> Any:
    """A client for publishing from the handler: explicit timeouts and attempts, a connection per thread.

    Its calls' worst case fits in DEADLINE_RESERVE_MS (deadline.publishing_budget), as they run
    after the endpoint's deadline; botocore's standard retry mode retries throttling and 5xx
    answers with jittered backoff. Unless given, the budget and the pool follow the handler's
    environment (DEADLINE_RESERVE_MS, ENDPOINT_CONCURRENCY), as the destinations call it.
    """
    if budget is None:
        budget = publishing_budget(int(os.environ.get("DEADLINE_RESERVE_MS") or DEFAULT_RESERVE_MS))
    if pool_size is None:
        pool_size = max(MIN_POOL_CONNECTIONS, int(os.environ.get("ENDPOINT_CONCURRENCY") or 0))
    return boto3.client(
        service,
        config=Config(
            connect_timeout=budget.connect_seconds,
            read_timeout=budget.read_seconds,
            retries={"mode": "standard", "total_max_attempts": budget.attempts},
            max_pool_connections=pool_size,
        ),
    )


def plan_batches(
    messages: Sequence[OutgoingMessage],
    max_entries: int = SQS_MAX_BATCH_ENTRIES,
    max_bytes: int = SQS_MAX_BATCH_BYTES,
    size: Callable[[OutgoingMessage], int] = OutgoingMessage.size,
) -> list[list[OutgoingMessage]]:
    """Split messages, in order, into calls of at most `max_entries` messages and `max_bytes` bytes.

    `size` says how many bytes the service counts for one message. A message too large for any
    call travels alone, so it fails on its own instead of taking its neighbours with it.
    """
    batches: list[list[OutgoingMessage]] = []
    current: list[OutgoingMessage] = []
    current_bytes = 0
    for message in messages:
        message_bytes = size(message)
        if current and (len(current) == max_entries or current_bytes + message_bytes > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(message)
        current_bytes += message_bytes
    if current:
        batches.append(current)
    return batches


def send_batches(
    executor: Executor,
    batches: Sequence[list[OutgoingMessage]],
    send_batch: Callable[[list[OutgoingMessage]], dict[str, RecordFailure]],
    *,
    keep_group_order: bool = False,
) -> dict[str, RecordFailure]:
    """Run `send_batch` for every batch concurrently on the executor; merge the failures.

    With `keep_group_order`, a group whose messages span several batches must not have a later
    batch overtake an earlier one, so then the batches go one after the other.
    """

    def send(batch: list[OutgoingMessage]) -> dict[str, RecordFailure]:
        return _send_pinning_refusals(send_batch, batch)

    if keep_group_order and _a_group_spans_batches(batches):
        outcomes = map(send, batches)
    else:
        outcomes = executor.map(send, batches)
    failed: dict[str, RecordFailure] = {}
    for outcome in outcomes:
        failed.update(outcome)
    return failed


def _send_pinning_refusals(
    send_batch: Callable[[list[OutgoingMessage]], dict[str, RecordFailure]], batch: list[OutgoingMessage]
) -> dict[str, RecordFailure]:
    """Send one batch; when every message of it is refused for good, send each alone to find which.

    A call refused as a whole as invalid (a Kinesis ValidationException, say) is usually one
    message's fault, and would otherwise dead-letter its neighbours with it. Refused messages were
    not taken, so sending them again publishes nothing twice; in order, so a group keeps it.
    """
    failed = send_batch(batch)
    if len(batch) < 2 or len(failed) < len(batch) or not all(failure.permanent for failure in failed.values()):
        return failed
    alone: dict[str, RecordFailure] = {}
    for message in batch:
        alone.update(send_batch([message]))
    return alone


def _a_group_spans_batches(batches: Sequence[list[OutgoingMessage]]) -> bool:
    seen: set[str] = set()
    for batch in batches:
        groups = {message.group for message in batch if message.group}
        if groups & seen:
            return True
        seen |= groups
    return False


def call_failed(operation: str, messages: Sequence[OutgoingMessage], error: Exception) -> dict[str, RecordFailure]:
    """Every message of a call that failed as a whole, with the call's error as the reason."""
    failure = classify_sink_error(operation, error)
    return {message.key: failure for message in messages}


def _entry(entry_id: str, message: OutgoingMessage, fifo: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "MessageBody": message.body}
    if message.attributes:
        entry["MessageAttributes"] = {
            name: {"DataType": "String", "StringValue": value} for name, value in message.attributes.items()
        }
    if fifo:
        entry["MessageGroupId"] = message.group or message.key
        # The key is the source record's message id, the same on every delivery, so a record
        # published again after a partial failure is dropped by SQS within its 5-minute window.
        entry["MessageDeduplicationId"] = message.key
    return entry


class QueuePublisher:
    """Publishes to one queue whose URL is looked up once, on first use.

    A FIFO queue (`fifo=True`) keeps each group's messages in order: the group is the message's
    `group`, or its key when it has none, and the key de-duplicates.
    """

    def __init__(self, sqs_client: Any, queue_name: str, executor: Executor, *, fifo: bool = False) -> None:
        self._sqs = sqs_client
        self._queue_name = queue_name
        self._executor = executor
        self._fifo = fifo
        self._queue_url: str | None = None

    @property
    def queue_url(self) -> str:
        if self._queue_url is None:
            self._queue_url = self._sqs.get_queue_url(QueueName=self._queue_name)["QueueUrl"]
        return self._queue_url

    def send(self, messages: Sequence[OutgoingMessage]) -> dict[str, RecordFailure]:
        """Send every message; return {key: failure} for those SQS did not accept."""
        if not messages:
            return {}
        try:
            queue_url = self.queue_url
        except (ClientError, BotoCoreError) as error:
            return call_failed("GetQueueUrl", messages, error)
        return send_batches(
            self._executor,
            plan_batches(messages),
            lambda batch: self._send_batch(queue_url, batch),
            keep_group_order=self._fifo,
        )

    def key_problem(self, group: str) -> str:
        """A FIFO queue's MessageGroupId is at most 128 letters, digits and punctuation; a standard queue has none."""
        if not self._fifo:
            return ""
        if len(group) > SQS_MAX_GROUP_ID_CHARS:
            return f"is {len(group)} characters; an SQS FIFO MessageGroupId takes at most {SQS_MAX_GROUP_ID_CHARS}"
        if not SQS_GROUP_ID.fullmatch(group):
            return "holds characters an SQS FIFO MessageGroupId cannot (only letters, digits and punctuation)"
        return ""

    def _send_batch(self, queue_url: str, batch: list[OutgoingMessage]) -> dict[str, RecordFailure]:
        # Entry ids only need to be unique within one call; positions keep them valid whatever the keys are.
        entries = [_entry(str(position), message, self._fifo) for position, message in enumerate(batch)]
        try:
            response = self._sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        except (ClientError, BotoCoreError) as error:
            return call_failed("SendMessageBatch", batch, error)
        return batch_entry_failures(batch, response)


def batch_entry_failures(batch: Sequence[OutgoingMessage], response: dict[str, Any]) -> dict[str, RecordFailure]:
    """The messages a SendMessageBatch or PublishBatch answer lists as Failed (entry ids are positions);
    those refused as the sender's fault (SenderFault) are refused for good."""
    return {batch[int(entry["Id"])].key: batch_entry_failure(entry) for entry in response.get("Failed", [])}
