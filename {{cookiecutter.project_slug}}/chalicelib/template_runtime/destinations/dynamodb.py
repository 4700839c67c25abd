# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The prediction destination: a DynamoDB table holding the latest prediction per key.

What it guarantees: the table keeps, for each key (the PARTITION_KEY_FIELD value of the model
input), the prediction of the newest event, whatever order the events are handled in. Each
write is conditional: it only replaces a stored prediction whose event is older, so a late or
redelivered older event never overwrites a newer one, and writing the same event twice changes
nothing. Of two events of one key in the same millisecond, the one the source put later is the
newer: its source_order is a FIFO queue's or a stream's sequence number. A standard queue keeps
no order, so there the greater message id wins: arbitrary, but the same whichever is written
first. (A copy `make redrive` sent is a new record to the source, so it orders after the records
sent before it.) Each item expires PREDICTION_TTL_DAYS after it was written (DynamoDB's TTL on
expires_at). The table's stream, when enabled, shows every prediction that was stored.

Item layout (the read API depends on it):
    <PARTITION_KEY_FIELD>  S  the key value (the message's group)
    event_time_ms          N  when the event happened (the write time if it carries none)
    message_id             S  the source record's message id
    source_order           S  the record's place in its source's order, as text that sorts in that
                              order (feature_events.sequence_order): breaks a tie of event times
    envelope               S  the prediction envelope, as JSON text
    expires_at             N  epoch seconds after which DynamoDB deletes the item
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .aws_limits import DYNAMODB_MAX_PARTITION_KEY_BYTES
from .failures import RecordFailure, classify_sink_error
from .publishing import OutgoingMessage, Sink, aws_client

logger = logging.getLogger(__name__)

EVENT_TIME_ATTRIBUTE = "event_time_ms"
EXPIRES_AT_ATTRIBUTE = "expires_at"
MESSAGE_ID_ATTRIBUTE = "message_id"
SOURCE_ORDER_ATTRIBUTE = "source_order"
# An item takes at most 400 KB, attribute names included (400,000 bytes, to be safe). The rest
# is room for the key (a partition key value takes up to DYNAMODB_MAX_PARTITION_KEY_BYTES), the
# message id, the source order, the numbers and the names.
MAX_ITEM_BYTES = 400_000
MAX_MESSAGE_BYTES = MAX_ITEM_BYTES - 4096
_SECONDS_PER_DAY = 24 * 3600


class PredictionTable:
    """Writes each prediction with a conditional PutItem; a newer stored prediction wins.

    BatchWriteItem cannot be conditional, so the writes are single PutItem calls, run
    concurrently on the executor.
    """

    def __init__(
        self, dynamodb_client: Any, table_name: str, key_field: str, ttl_days: int, executor: Executor
    ) -> None:
        self._dynamodb = dynamodb_client
        self._table_name = table_name
        self._key_field = key_field
        self._ttl_seconds = ttl_days * _SECONDS_PER_DAY
        self._executor = executor

    def send(self, messages: Sequence[OutgoingMessage]) -> dict[str, RecordFailure]:
        """Store every message; return {key: failure} for those DynamoDB did not accept."""
        failed: dict[str, RecordFailure] = {}
        for message, failure in zip(messages, self._executor.map(self._put, messages), strict=True):
            if failure:
                failed[message.key] = failure
        return failed

    def key_problem(self, group: str) -> str:
        """A partition key value takes at most 2,048 bytes of UTF-8; a longer one gets ValidationException."""
        size, limit = len(group.encode()), DYNAMODB_MAX_PARTITION_KEY_BYTES
        return f"is {size} bytes of UTF-8; a DynamoDB partition key takes at most {limit}" if size > limit else ""

    def _put(self, message: OutgoingMessage) -> RecordFailure | None:
        """Write one prediction; return why it failed, or None when it is stored or superseded.

        A ValidationException (an item DynamoDB cannot take) fails the same way every time, so it
        is a permanent failure; throttling, a missing table or a denied write are retried."""
        now = time.time()
        event_time_ms = message.event_time_ms if message.event_time_ms is not None else int(now * 1000)
        source_order = message.source_order or message.key
        try:
            self._dynamodb.put_item(
                TableName=self._table_name,
                Item={
                    self._key_field: {"S": message.group},
                    EVENT_TIME_ATTRIBUTE: {"N": str(event_time_ms)},
                    MESSAGE_ID_ATTRIBUTE: {"S": message.key},
                    SOURCE_ORDER_ATTRIBUTE: {"S": source_order},
                    "envelope": {"S": message.body},
                    EXPIRES_AT_ATTRIBUTE: {"N": str(int(now) + self._ttl_seconds)},
                },
                # Newer by (event time, source order): the order settles a same-millisecond tie as
                # the source ordered the two, whichever is written first, and a redelivered record
                # (same order) is not newer than itself. An item written before source_order was
                # stored has none, and a comparison with a missing attribute is false, so an event
                # of the very millisecond of such an item is refused (the stored one stays): only
                # possible right at the upgrade, and no worse than the message-id tie-break was.
                ConditionExpression=(
                    "attribute_not_exists(#key) OR #time < :time OR (#time = :time AND #order < :order)"
                ),
                ExpressionAttributeNames={
                    "#key": self._key_field,
                    "#time": EVENT_TIME_ATTRIBUTE,
                    "#order": SOURCE_ORDER_ATTRIBUTE,
                },
                ExpressionAttributeValues={":time": {"N": str(event_time_ms)}, ":order": {"S": source_order}},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                # The same or a newer event is stored already: this prediction is done with.
                # Ids only in the log: feature values may be personal data.
                logger.info(json.dumps({"event": "prediction_superseded", "message_id": message.key}))
                return None
            return classify_sink_error("PutItem", error)
        except BotoCoreError as error:
            return classify_sink_error("PutItem", error)
        return None


def prediction_sink(executor: Executor) -> Sink:
    """The writer for the table named PREDICTIONS_TABLE_NAME; its client is created here, once."""
    return PredictionTable(
        aws_client("dynamodb"),
        os.environ["PREDICTIONS_TABLE_NAME"],
        key_field=os.environ["PARTITION_KEY_FIELD"],
        ttl_days=int(os.environ.get("PREDICTION_TTL_DAYS", "30")),
        executor=executor,
    )
