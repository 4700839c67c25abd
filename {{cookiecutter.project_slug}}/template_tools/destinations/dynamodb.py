# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The prediction table in local mode: create it in the emulator, read what is stored, refuse some writes.

The reader follows the table's stream (NEW_IMAGE), which create_destination enables. boto3 finds
the emulator through AWS_ENDPOINT_URL (see emulator.py), so these functions work against
whichever emulator that names.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, suppress
from typing import Any

import boto3
from botocore.config import Config

from .sink_faults import fail_calls

# The item layout chalicelib/destination.py writes.
EVENT_TIME_ATTRIBUTE = "event_time_ms"
EXPIRES_AT_ATTRIBUTE = "expires_at"
ENVELOPE_ATTRIBUTE = "envelope"
MESSAGE_ID_ATTRIBUTE = "message_id"
SOURCE_ORDER_ATTRIBUTE = "source_order"
_LAYOUT_ATTRIBUTES = frozenset(
    {EVENT_TIME_ATTRIBUTE, EXPIRES_AT_ATTRIBUTE, ENVELOPE_ATTRIBUTE, MESSAGE_ID_ATTRIBUTE, SOURCE_ORDER_ATTRIBUTE}
)
# How often the reader asks again while it waits for records.
POLL_INTERVAL_SECONDS = 0.1
# The call that publishes predictions (service.Operation, as botocore names its events): the
# fault plan's kill point "publishing" strikes after the first one.
# How the benchmark names this destination, and the handler's publishing API beside the naive handler's.
DESTINATION_LABEL = "predictions table (DynamoDB)"
PUBLISH_API = "conditional PutItem vs unconditional PutItem"
PUBLISH_OPERATION = "dynamodb.PutItem"
# The benchmark's publish target: DynamoDB's batch write (BatchWriteItem) takes no condition, and
# only a conditional write keeps the newest prediction of each key: one PutItem per prediction,
# and no more.
PUBLISH_LIMIT_PER_1000 = 1000
PUBLISH_TARGET = "<= 1,000: one PutItem each (both modes)"
# What `make tail` does to the predictions it shows, printed in its --help (tail.py).
TAIL_NOTE = """\
Tail follows the table's stream (NEW_IMAGE) from its latest record on: it shows each stored
prediction, not those a newer prediction of the same key superseded. It reads only.
"""


def create_destination(environment: Mapping[str, str]) -> None:
    """Create the table named PREDICTIONS_TABLE_NAME, with its stream and TTL; idempotent.

    Keyed by PARTITION_KEY_FIELD, billed per request, items expire at `expires_at`, and the
    stream shows each stored item's new image.
    """
    dynamodb = boto3.client("dynamodb")
    name, key_field = environment["PREDICTIONS_TABLE_NAME"], environment["PARTITION_KEY_FIELD"]
    # The table may exist already (ResourceInUse).
    with suppress(dynamodb.exceptions.ResourceInUseException):
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": key_field, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key_field, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
        )
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1})
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    # UpdateTimeToLive refuses to enable TTL again when it is already on.
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRES_AT_ATTRIBUTE}
        )


class PredictionReader:
    """Follows the table's stream from the moment the reader is created; answers what is stored."""

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._dynamodb = boto3.client("dynamodb")
        # botocore sends calls that name a stream ARN to an endpoint with the account id in its
        # host name, which moto does not serve; the plain regional endpoint works everywhere.
        self._streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        self._table_name = environment["PREDICTIONS_TABLE_NAME"]
        self._key_field = environment["PARTITION_KEY_FIELD"]
        stream_arn = self._dynamodb.describe_table(TableName=self._table_name)["Table"]["LatestStreamArn"]
        shards = self._streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        # Shard id -> where to read next; a shard that is closed and read to its end drops out.
        self._positions: dict[str, str] = {
            shard["ShardId"]: self._streams.get_shard_iterator(
                StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
            )["ShardIterator"]
            for shard in shards
        }
        # Shard id -> the sequence number of the last record read from it.
        self._last_sequence: dict[str, int] = {}

    def read(self, wait_seconds: float = 0) -> list[dict[str, Any]]:
        """The envelopes stored since the last read; waits up to `wait_seconds` for some.

        A prediction that did not replace the stored one (an older or repeated event) is not
        stored, so it never shows here: see newer_prediction_stored.
        """
        deadline = time.monotonic() + wait_seconds
        while True:
            envelopes = self._read_stored()
            if envelopes or time.monotonic() >= deadline:
                return envelopes
            time.sleep(POLL_INTERVAL_SECONDS)

    def newer_prediction_stored(self, key: str, event_time_ms: int, message_id: str) -> bool:
        """Whether the table holds another record's prediction for `key` that the sink kept over
        this one's, a record the handler is done with.

        That is how a record whose own write was superseded is accounted for: its write is not
        in the stream, but the stored prediction is a newer event's, or another record's of the
        same millisecond (the sink orders those by the source's order, which the ledger does not
        know: the handler being done with this record, the table kept the other). A stored
        prediction of the record itself is not a supersession: it is in the stream, and read()
        will deliver it.
        """
        item = self._dynamodb.get_item(
            TableName=self._table_name,
            Key={self._key_field: {"S": key}},
            ConsistentRead=True,
            ProjectionExpression="#time, #id",
            ExpressionAttributeNames={"#time": EVENT_TIME_ATTRIBUTE, "#id": MESSAGE_ID_ATTRIBUTE},
        ).get("Item")
        if item is None:
            return False
        stored_time_ms = int(item[EVENT_TIME_ATTRIBUTE]["N"])
        if stored_time_ms != event_time_ms:
            return stored_time_ms > event_time_ms
        return item[MESSAGE_ID_ATTRIBUTE]["S"] != message_id

    def _read_stored(self) -> list[dict[str, Any]]:
        envelopes: list[dict[str, Any]] = []
        for shard_id, iterator in list(self._positions.items()):
            while True:
                response = self._streams.get_records(ShardIterator=iterator)
                # Only records past the last one read. moto numbers a stream record by the
                # shard's length when it is written, so two writes at once can share a number,
                # and its next iterator then hands the last record out again on every call: a
                # reader that stopped only at an empty page never stopped.
                seen = self._last_sequence.get(shard_id, -1)
                fresh = [record for record in response["Records"] if _sequence(record) > seen]
                envelopes.extend(
                    json.loads(record["dynamodb"]["NewImage"][ENVELOPE_ATTRIBUTE]["S"])
                    for record in fresh
                    # TTL deletions (REMOVE) carry no new image.
                    if record["eventName"] in ("INSERT", "MODIFY")
                )
                if fresh:
                    self._last_sequence[shard_id] = max(_sequence(record) for record in fresh)
                iterator = response.get("NextShardIterator")
                if not fresh or iterator is None:
                    break
            if iterator is None:
                del self._positions[shard_id]
            else:
                self._positions[shard_id] = iterator
        return envelopes


def _sequence(record: dict[str, Any]) -> int:
    return int(record["dynamodb"]["SequenceNumber"])


def refuse_predictions(events: Any, refuse: Callable[[dict[str, str]], bool]) -> AbstractContextManager[None]:
    """Make the PutItem of each prediction `refuse` picks fail with a server error (DynamoDB has no partial batch).

    `refuse` gets {"body": the envelope JSON text, "group": the item's key value}, once per
    write and attempt. `events` is a client's or a session's event system: see sink_faults.
    """

    def judge(params: dict[str, Any]) -> bool:
        item = params["Item"]
        key_value = next(value["S"] for name, value in item.items() if name not in _LAYOUT_ATTRIBUTES)
        return refuse({"body": item[ENVELOPE_ATTRIBUTE]["S"], "group": key_value})

    return fail_calls(events, "dynamodb.PutItem", judge, error_code="InternalServerError")


def single_record_publisher(environment: Mapping[str, str]) -> Callable[[str, str, dict[str, Any]], None]:
    """How a naive handler publishes (naive_handler.py, the benchmark's foil): `publish(prediction,
    body, record)` stores the prediction with one unconditional PutItem, keyed by the model
    input's PARTITION_KEY_FIELD. The client is created here, once.

    Unconditional: whichever write comes last wins, so an older event handled late or delivered
    again overwrites a newer prediction of its key (the handler's conditional write refuses it).
    The raw prediction goes where the handler puts the envelope, so readers see it, with the
    write time as its event time (it knows no other); no message id, and no expiry, so the item
    stays until something overwrites it. A body without the key raises, as any error does here.
    """
    dynamodb = boto3.client("dynamodb")
    table_name, key_field = environment["PREDICTIONS_TABLE_NAME"], environment["PARTITION_KEY_FIELD"]

    def publish(prediction: str, body: str, record: dict[str, Any]) -> None:
        key = str(json.loads(body)[key_field])
        dynamodb.put_item(
            TableName=table_name,
            Item={
                key_field: {"S": key},
                EVENT_TIME_ATTRIBUTE: {"N": str(int(time.time() * 1000))},
                ENVELOPE_ATTRIBUTE: {"S": prediction},
            },
        )

    return publish


def add_tail_options(parser: argparse.ArgumentParser) -> None:
    """`make tail` needs no option of its own here: it takes nothing away from the consumers."""


def tail_refusal(args: argparse.Namespace) -> str | None:
    """Tail may always start here (None): it takes nothing away from the consumers."""
    return None


def prepare_tail(environment: Mapping[str, str]) -> None:
    """Nothing to set up: tail reads the table's stream itself."""
