# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The prediction destination: a Kinesis data stream, keyed by the model input's partition key field.

What it guarantees: every accepted prediction is delivered at least once to each consumer of the
stream, and all predictions of one key (the PARTITION_KEY_FIELD value) go to the same shard,
where a consumer reads them in the order they were accepted. The handler publishes an ordered
source's records one per group per call, so a record that must be retried is never overtaken by
a later record of its group. Consumers drop duplicates on the envelope's message_id.

Kinesis partition keys are 1 to 256 characters. A longer key value is replaced by its SHA-256
(hex, 64 characters): still the same shard for the same value. A message without a key value
(the handler dead-letters those before publishing) would be keyed by its message id.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .aws_limits import KINESIS_MAX_PARTITION_KEY_CHARS
from .failures import RecordFailure
from .publishing import OutgoingMessage, Sink, aws_client, call_failed, plan_batches, send_batches

# A record's data and partition key together take at most 1 MiB; PutRecords takes at most 500
# records and 5 MiB in all.
MAX_RECORD_BYTES = 1_048_576
MAX_RECORDS_PER_CALL = 500
MAX_CALL_BYTES = 5 * 1_048_576
MAX_PARTITION_KEY_CHARS = KINESIS_MAX_PARTITION_KEY_CHARS
# The largest prediction that always fits in a record: the rest is room for the longest
# partition key (256 characters of up to 4 bytes each in UTF-8).
MAX_MESSAGE_BYTES = MAX_RECORD_BYTES - 4 * MAX_PARTITION_KEY_CHARS


def partition_key(message: OutgoingMessage) -> str:
    """The record's partition key: the message's group, made to fit Kinesis's limits."""
    if not message.group:
        return message.key[:MAX_PARTITION_KEY_CHARS]
    if len(message.group) > MAX_PARTITION_KEY_CHARS:
        return hashlib.sha256(message.group.encode()).hexdigest()
    return message.group


def record_bytes(message: OutgoingMessage) -> int:
    """Bytes Kinesis counts for one record: the data plus the partition key."""
    return len(message.body.encode()) + len(partition_key(message).encode())


class StreamPublisher:
    """Publishes to one stream with PutRecords."""

    def __init__(self, kinesis_client: Any, stream_name: str, executor: Executor) -> None:
        self._kinesis = kinesis_client
        self._stream_name = stream_name
        self._executor = executor

    def send(self, messages: Sequence[OutgoingMessage]) -> dict[str, RecordFailure]:
        """Put every message on the stream; return {key: failure} for those Kinesis did not accept."""
        if not messages:
            return {}
        batches = plan_batches(messages, MAX_RECORDS_PER_CALL, MAX_CALL_BYTES, size=record_bytes)
        return send_batches(self._executor, batches, self._put_records, keep_group_order=True)

    def key_problem(self, group: str) -> str:
        """No key is refused: one longer than Kinesis takes is hashed to one it takes (see partition_key)."""
        return ""

    def _put_records(self, batch: list[OutgoingMessage]) -> dict[str, RecordFailure]:
        records = [{"Data": message.body.encode(), "PartitionKey": partition_key(message)} for message in batch]
        try:
            response = self._kinesis.put_records(StreamName=self._stream_name, Records=records)
        except (ClientError, BotoCoreError) as error:
            return call_failed("PutRecords", batch, error)
        # The answer lists one result per record, in the order of the request. A record fails alone
        # only for throughput or an internal error (ProvisionedThroughputExceeded, InternalFailure):
        # both pass, so it is retried; an invalid record fails the whole call (call_failed).
        return {
            message.key: RecordFailure.transient_failure(
                result["ErrorCode"], f"{result['ErrorCode']}: {result.get('ErrorMessage', '')}".strip()
            )
            for message, result in zip(batch, response["Records"], strict=True)
            if result.get("ErrorCode")
        }


def prediction_sink(executor: Executor) -> Sink:
    """The publisher for the stream named PREDICTIONS_STREAM_NAME; its client is created here, once."""
    return StreamPublisher(aws_client("kinesis"), os.environ["PREDICTIONS_STREAM_NAME"], executor)
