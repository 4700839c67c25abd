# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The prediction stream in local mode: create it in the emulator, read what arrives, refuse some records.

boto3 finds the emulator through AWS_ENDPOINT_URL (see emulator.py), so these functions work
against whichever emulator that names.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, suppress
from typing import Any

import boto3

from .sink_faults import KINESIS_PUT_RECORDS, refuse_batch_entries

# Two shards, so that local runs show that each key keeps to one shard.
SHARD_COUNT = 2
# How often the reader asks again while it waits for records.
POLL_INTERVAL_SECONDS = 0.1
# The call that publishes predictions (service.Operation, as botocore names its events): the
# fault plan's kill point "publishing" strikes after the first one.
# How the benchmark names this destination, and the handler's publishing API beside the naive handler's.
DESTINATION_LABEL = "predictions stream (Kinesis)"
PUBLISH_API = "PutRecords vs PutRecord"
PUBLISH_OPERATION = "kinesis.PutRecords"
# The benchmark's publish target: one batch call per batch of 10 records, and a little room for a
# batch split by size.
PUBLISH_LIMIT_PER_1000 = 110
PUBLISH_TARGET = "<= 110 (both modes)"
# What `make tail` does to the predictions it shows, printed in its --help (tail.py).
TAIL_NOTE = """\
Tail reads every shard from its latest record on, like any other stream reader: the consumers
still get every prediction.
"""


def create_destination(environment: Mapping[str, str]) -> None:
    """Create the stream named PREDICTIONS_STREAM_NAME and wait until it is active; idempotent."""
    kinesis = boto3.client("kinesis")
    name = environment["PREDICTIONS_STREAM_NAME"]
    # The stream may exist already (ResourceInUse).
    with suppress(kinesis.exceptions.ResourceInUseException):
        kinesis.create_stream(StreamName=name, ShardCount=SHARD_COUNT)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})


class PredictionReader:
    """Follows every shard of the stream from the moment the reader is created."""

    # Every prediction is kept, so none is ever superseded (a table's reader says which were).
    newer_prediction_stored = None

    def __init__(self, environment: Mapping[str, str]) -> None:
        self._kinesis = boto3.client("kinesis")
        stream_name = environment["PREDICTIONS_STREAM_NAME"]
        shards = self._kinesis.list_shards(StreamName=stream_name)["Shards"]
        # Shard id -> where to read next; a shard that is closed and read to its end drops out.
        self._positions: dict[str, str] = {
            shard["ShardId"]: self._kinesis.get_shard_iterator(
                StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
            )["ShardIterator"]
            for shard in shards
        }

    def read(self, wait_seconds: float = 0) -> list[dict[str, Any]]:
        """The envelopes put since the last read, each shard's in order; waits up to `wait_seconds` for some."""
        deadline = time.monotonic() + wait_seconds
        while True:
            envelopes = [json.loads(record["Data"]) for record in self.read_records()]
            if envelopes or time.monotonic() >= deadline:
                return envelopes
            time.sleep(POLL_INTERVAL_SECONDS)

    def read_records(self) -> list[dict[str, Any]]:
        """The records put since the last read, as GetRecords returns them, shard after shard."""
        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self._positions.items()):
            while True:
                response = self._kinesis.get_records(ShardIterator=iterator)
                records.extend(dict(record, ShardId=shard_id) for record in response["Records"])
                iterator = response.get("NextShardIterator")
                if not response["Records"] or iterator is None:
                    break
            if iterator is None:
                del self._positions[shard_id]
            else:
                self._positions[shard_id] = iterator
        return records


def refuse_predictions(events: Any, refuse: Callable[[dict[str, str]], bool]) -> AbstractContextManager[None]:
    """Make PutRecords refuse the records `refuse` picks, as Kinesis reports a partial failure.

    `refuse` gets {"body": the record's data as text, "group": its partition key}, once per
    record and attempt. `events` is a client's or a session's event system: see sink_faults.
    """

    def judge(record: dict[str, Any]) -> bool:
        data = record["Data"]
        body = data.decode() if isinstance(data, bytes) else data
        return refuse({"body": body, "group": record["PartitionKey"]})

    return refuse_batch_entries(events, KINESIS_PUT_RECORDS, judge)


def single_record_publisher(environment: Mapping[str, str]) -> Callable[[str, str, dict[str, Any]], None]:
    """How a naive handler publishes (naive_handler.py, the benchmark's foil): `publish(prediction,
    body, record)` puts the prediction alone with PutRecord. The client is created here, once.

    A stream needs a partition key: the model input's PARTITION_KEY_FIELD, as the handler uses.
    A body without it raises, as any error in a naive handler does.
    """
    kinesis = boto3.client("kinesis")
    stream_name, key_field = environment["PREDICTIONS_STREAM_NAME"], environment["PARTITION_KEY_FIELD"]

    def publish(prediction: str, body: str, record: dict[str, Any]) -> None:
        key = str(json.loads(body)[key_field])
        kinesis.put_record(StreamName=stream_name, Data=prediction.encode(), PartitionKey=key)

    return publish


def add_tail_options(parser: argparse.ArgumentParser) -> None:
    """`make tail` needs no option of its own here: it takes nothing away from the consumers."""


def tail_refusal(args: argparse.Namespace) -> str | None:
    """Tail may always start here (None): it takes nothing away from the consumers."""
    return None


def prepare_tail(environment: Mapping[str, str]) -> None:
    """Nothing to set up: tail reads the stream's shards itself."""
