# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Local mode's features source: a Kinesis data stream, its producer, and its Lambda-like trigger.

The producer keys each event by its {{ cookiecutter.partition_key_field }}, so a key's events land on one shard in the order
they were sent. Records the handler keeps failing are not moved anywhere by the stream: after
MaximumRetryAttempts the trigger sends their metadata (shard and sequence number range) to the
dead-letter queue, Lambda's on-failure destination, and the shard moves on.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.template_runtime.redelivery import EventOrigin, iso_time, unwrap, wrap

from .emulator import Redelivery, ensure_dead_letter_queue
from .kinesis_trigger import RETRY_FOREVER, KinesisTrigger, lambda_kinesis_record
from .lambda_trigger import DeliveryStamps, FunctionConfiguration, Handler

if TYPE_CHECKING:
    from .features_producer import OutgoingEvent

# The ARN a Lambda record names its event source by (sample_event_files.py fills it in).
# How the benchmark names this source, and the calls its throughput ceiling is measured on.
SOURCE_LABEL = "Kinesis stream trigger"
CEILING_PATH = "Kinesis stream: PutRecords, GetRecords"
SOURCE_ARN_FORMAT = "arn:aws:kinesis:{region}:{account}:stream/{name}"

TRIGGER_DEAD_LETTER_REASON = "retries exhausted (on-failure destination)"
# Sent 10 at a time like the SQS sources, so the run paces itself the same way (PutRecords
# would take 500).
MAX_EVENTS_PER_SEND = 10
# Two shards: two pollers, so local runs show both per-shard order and concurrency.
LOCAL_SHARD_COUNT = 2

# The operator commands' producer (features_producer.py) splits events into batch calls this big:
# PutRecords takes at most 500 records and 5 MiB per call.
PRODUCER_MAX_EVENTS_PER_CALL = 500
PRODUCER_MAX_BYTES_PER_CALL = 5 * 1024 * 1024
# A partition key is at most 256 characters.
PRODUCER_MAX_GROUP_CHARS = 256
# GetRecords calls that may come back empty (Kinesis can answer empty while records follow)
# before a range the redrive reads back counts as not in the stream.
REDRIVE_MAX_EMPTY_READS = 20
# An on-failure message this close to being dropped (with its records, or by the dead-letter
# queue) is named whenever the redrive reads it.
REDRIVE_WARNING_HOURS = 24


@dataclass(frozen=True)
class FeaturesSource:
    """The features stream and the dead-letter queue that is its trigger's on-failure destination."""

    stream_name: str
    arn: str
    dead_letter_url: str


def create_source(environment: Mapping[str, str], redelivery: Redelivery) -> FeaturesSource:
    """Create FEATURES_STREAM_NAME (if it does not exist) and DEAD_LETTER_QUEUE_NAME; idempotent.

    A stream keeps records for their retention whatever happens to them, so `redelivery` only
    shapes the trigger (see local_trigger).
    """
    kinesis = boto3.client("kinesis")
    name = environment["FEATURES_STREAM_NAME"]
    with contextlib.suppress(kinesis.exceptions.ResourceInUseException):
        kinesis.create_stream(StreamName=name, ShardCount=LOCAL_SHARD_COUNT)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
    arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
    dead_letter_url = ensure_dead_letter_queue(boto3.client("sqs"), environment["DEAD_LETTER_QUEUE_NAME"])
    return FeaturesSource(stream_name=name, arn=arn, dead_letter_url=dead_letter_url)


class EventSender:
    """Sends event bodies as a producer would: PutRecords, each event under its key."""

    def __init__(self, source: FeaturesSource) -> None:
        self._kinesis = boto3.client("kinesis")
        self._stream_name = source.stream_name

    def send(self, bodies: Sequence[str], groups: Sequence[str]) -> list[str | None]:
        """Put up to MAX_EVENTS_PER_SEND bodies, `groups` giving each one's partition key.

        Returns each record's id as the handler will see it, its eventID
        `<shardId>:<sequenceNumber>`, or None where Kinesis refused the record.
        """
        response = self._kinesis.put_records(
            StreamName=self._stream_name,
            Records=[
                {"Data": body.encode(), "PartitionKey": group} for body, group in zip(bodies, groups, strict=True)
            ],
        )
        return [
            None if "ErrorCode" in entry else f"{entry['ShardId']}:{entry['SequenceNumber']}"
            for entry in response["Records"]
        ]


class StageSender:
    """The operator commands' sender (features_producer.py): one batch call to a stage's existing stream.

    Unlike EventSender it finds a stream that already exists (in AWS, or in the emulator
    AWS_ENDPOINT_URL names) and reports why each refused event was refused.
    """

    def __init__(self, environment: Mapping[str, str], config: Config) -> None:
        self._kinesis = boto3.client("kinesis", config=config)
        self.name = environment["FEATURES_STREAM_NAME"]
        # Fails here, with the stream's name, when the stream does not exist.
        self._kinesis.describe_stream_summary(StreamName=self.name)

    def as_sent(self, event: OutgoingEvent, event_group: Callable[[str], str]) -> OutgoingEvent:
        """The event as the stream takes it: a body sent again goes inside the redelivery wrapper
        with its origin, since a record has no attributes (chalicelib/template_runtime/redelivery.py).
        Its partition key is taken from the original body."""
        if event.origin is None:
            return event
        key = event.group or event_group(event.body)
        return replace(event, body=wrap(event.body, event.origin), group=key, origin=None)

    def send_call(
        self, batch: Sequence[OutgoingEvent], event_group: Callable[[str], str]
    ) -> list[tuple[str | None, str]]:
        """Send one batch call; each event's (message id, "") or (None, why it was refused), in order.

        `event_group` gives the partition key of an event without a group of its own.
        """
        response = self._kinesis.put_records(
            StreamName=self.name,
            Records=[
                # surrogateescape: a body read back from a stream as bytes that are not UTF-8
                # (see redrive.py) goes out byte for byte.
                {
                    "Data": event.body.encode("utf-8", "surrogateescape"),
                    "PartitionKey": event.group or event_group(event.body),
                }
                for event in batch
            ],
        )
        # The same id the handler sees: the record's eventID.
        return [
            (None, f"{entry['ErrorCode']}: {entry.get('ErrorMessage', '')}")
            if "ErrorCode" in entry
            else (f"{entry['ShardId']}:{entry['SequenceNumber']}", "")
            for entry in response["Records"]
        ]


class DeadLetterEvents:
    """What the redrive (redrive.py) sends back to the features stream for a dead-letter message.

    The trigger's on-failure messages hold no records, only a shard and a range of sequence
    numbers: the redrive reads that range back from the stream and re-puts each record with its
    partition key. A range the stream no longer holds (past its retention) is reported as
    unrecoverable and left in the dead-letter queue.

    Such a message is only worth keeping while both it and its records last: it leaves the
    dead-letter queue at the end of the queue's retention, its records leave the stream at the
    end of the stream's. One that has less than REDRIVE_WARNING_HOURS left is named through
    `warn` (standard error by default) whenever it is read, a dry run included, so it is redriven
    in time.
    """

    def __init__(self, environment: Mapping[str, str], warn: Callable[[str], None] | None = None) -> None:
        self._stream = _StreamRange(environment["FEATURES_STREAM_NAME"])
        self._dead_letter_queue = environment["DEAD_LETTER_QUEUE_NAME"]
        self._warn = warn or _warn_on_stderr
        self._retention: tuple[timedelta, timedelta] | None = None

    def read(
        self, message_id: str, body: str, group: str, error_code: str | None, event_group: Callable[[str], str]
    ) -> tuple[list[tuple[str, str, str, EventOrigin | None]], str]:
        """Each event's (body, group, deduplication id, origin), and why none can be sent ("" when they can).

        A record the handler dead-lettered has no origin here: it is the event itself, and the
        redrive takes its origin from the dead-letter message.
        """
        del group
        # A record the handler dead-lettered (it has an error_code) is an event itself.
        batch_info = None if error_code is not None else _kinesis_batch_info(body)
        if batch_info is None:
            return [(body, event_group(body), "", None)], ""
        self._warn_if_expiring(message_id, body, batch_info)
        return self._stream.read(batch_info)

    def _warn_if_expiring(self, message_id: str, body: str, batch_info: Mapping[str, Any]) -> None:
        """Name an on-failure message whose records or whose pointer expire within REDRIVE_WARNING_HOURS."""
        try:
            stream_keeps, queue_keeps = self._retentions()
        except ClientError:
            # No stream or queue to ask: reading the range says why it cannot be redriven.
            return
        ends = []
        if (arrived := _moment(batch_info.get("approximateArrivalOfFirstRecord"))) is not None:
            ends.append(arrived + stream_keeps)
        if (gave_up := _moment(_gave_up_at(body))) is not None:
            ends.append(gave_up + queue_keeps)
        if not ends:
            return
        hours_left = (min(ends) - datetime.now(UTC)).total_seconds() / 3600
        if hours_left < REDRIVE_WARNING_HOURS:
            keys = ("shardId", "startSequenceNumber", "endSequenceNumber")
            shard, first, last = (batch_info.get(key) for key in keys)
            self._warn(
                f"{message_id}: the records of {shard} {first}..{last} can be redriven for about "
                f"{max(hours_left, 0):.0f} h more (until {min(ends):%Y-%m-%d %H:%M} UTC, when the stream or the "
                "dead-letter queue drops them): redrive it now"
            )

    def _retentions(self) -> tuple[timedelta, timedelta]:
        """How long the stream keeps records and the dead-letter queue keeps messages, read once."""
        if self._retention is None:
            sqs = boto3.client("sqs")
            url = sqs.get_queue_url(QueueName=self._dead_letter_queue)["QueueUrl"]
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MessageRetentionPeriod"])
            queue_seconds = int(attributes["Attributes"]["MessageRetentionPeriod"])
            self._retention = (self._stream.retention(), timedelta(seconds=queue_seconds))
        return self._retention


def _warn_on_stderr(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr, flush=True)


def _gave_up_at(body: str) -> str | None:
    """When the trigger gave up on the batch: the on-failure message's own timestamp."""
    try:
        moment = json.loads(body).get("timestamp")
    except (ValueError, AttributeError):
        return None
    return moment if isinstance(moment, str) else None


def _moment(value: object) -> datetime | None:
    """An ISO-8601 time from an on-failure message ("2026-11-25T10:00:00.000Z"), None when absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def exports_records(body: str) -> bool:
    """Whether a dead-letter export writes the events a message stands for rather than its body:
    an on-failure message stands for stream records, so a replay sends events."""
    return _kinesis_batch_info(body) is not None


def _kinesis_batch_info(body: str) -> dict[str, Any] | None:
    """The KinesisBatchInfo of a trigger's on-failure message; None for any other body."""
    try:
        info = json.loads(body).get("KinesisBatchInfo")
    except (ValueError, AttributeError):
        return None
    return info if isinstance(info, dict) else None


class _StreamRange:
    """Reads a range of a shard's records back from the features stream."""

    def __init__(self, stream_name: str) -> None:
        self._kinesis = boto3.client("kinesis")
        self._stream_name = stream_name

    def retention(self) -> timedelta:
        """How long the stream keeps a record after it arrived."""
        summary = self._kinesis.describe_stream_summary(StreamName=self._stream_name)["StreamDescriptionSummary"]
        return timedelta(hours=summary["RetentionPeriodHours"])

    def read(self, batch_info: Mapping[str, Any]) -> tuple[list[tuple[str, str, str, EventOrigin]], str]:
        """The records from startSequenceNumber to endSequenceNumber, or [] and why they cannot be read."""
        try:
            shard_id = str(batch_info["shardId"])
            first, last = int(batch_info["startSequenceNumber"]), int(batch_info["endSequenceNumber"])
            expected = int(batch_info.get("batchSize", 0))
        except (KeyError, TypeError, ValueError):
            return [], "the on-failure message names no shard and sequence range"
        try:
            records = self._records(shard_id, str(first), last)
        except ClientError as error:
            return [], f"cannot read {shard_id} from {first}: {error.response['Error'].get('Code')} (past retention?)"
        # A range that starts later than asked, or is short, lost records to retention.
        if not records or int(records[0]["SequenceNumber"]) != first or (expected and len(records) != expected):
            return [], f"the stream no longer holds all of {shard_id} {first}..{last} (past retention)"
        return [stream_record_event(record, shard_id) for record in records], ""

    def _records(self, shard_id: str, first: str, last: int) -> list[dict[str, Any]]:
        iterator = self._kinesis.get_shard_iterator(
            StreamName=self._stream_name,
            ShardId=shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            StartingSequenceNumber=first,
        )["ShardIterator"]
        records: list[dict[str, Any]] = []
        empty_reads = 0
        while iterator and empty_reads < REDRIVE_MAX_EMPTY_READS:
            response = self._kinesis.get_records(ShardIterator=iterator)
            for record in response["Records"]:
                if int(record["SequenceNumber"]) > last:
                    return records
                records.append(record)
            if not response["Records"]:
                if response.get("MillisBehindLatest", 0) == 0:
                    break
                empty_reads += 1
            iterator = response.get("NextShardIterator")
        return records


def stream_record_event(record: Mapping[str, Any], shard_id: str) -> tuple[str, str, str, EventOrigin]:
    """A record read back from the stream as the redrive sends it again: (body, partition key,
    deduplication id, origin).

    Its origin is its first delivery's eventID and arrival time; a record that is itself a copy
    sent again carries its origin in its redelivery wrapper, which is taken off, so a copy is
    never wrapped twice.
    """
    # surrogateescape: bytes that are not UTF-8 go out again byte for byte.
    body, origin = unwrap(record["Data"].decode("utf-8", "surrogateescape"))
    if origin is None:
        origin = EventOrigin(f"{shard_id}:{record['SequenceNumber']}", iso_time(record["ApproximateArrivalTimestamp"]))
    return body, record["PartitionKey"], "", origin


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
) -> KinesisTrigger:
    """The event source mapping the deployment sets up: one poller per shard, so
    `maximum_concurrency` does not apply; bisect on function errors; `redelivery`'s deliveries
    become MaximumRetryAttempts (deliveries - 1); then the on-failure destination."""
    deliveries = redelivery.max_receive_count
    return KinesisTrigger(
        handler,
        stream_name=source.stream_name,
        function=function,
        batch_size=batch_size,
        batching_window_seconds=batching_window_seconds,
        maximum_retry_attempts=RETRY_FOREVER if deliveries is None else deliveries - 1,
        bisect_batch_on_function_error=True,
        on_failure_queue_url=source.dead_letter_url,
        records_done=records_done,
    )


def dead_lettered_message_ids(message: dict[str, Any], sent_ids: Iterable[str]) -> list[str]:
    """The stream records one dead-letter queue message stands for.

    The handler names one record in `source_message_id`; the trigger's on-failure message names
    a shard and a range of sequence numbers, and stands for every record in it.
    """
    source_id = message.get("MessageAttributes", {}).get("source_message_id", {}).get("StringValue")
    if source_id:
        return [source_id]
    try:
        batch = json.loads(message["Body"])["KinesisBatchInfo"]
        shard_id, first, last = batch["shardId"], int(batch["startSequenceNumber"]), int(batch["endSequenceNumber"])
    except (ValueError, KeyError, TypeError):
        return []
    in_range = []
    for message_id in sent_ids:
        shard, _, sequence_number = message_id.partition(":")
        if shard == shard_id and first <= int(sequence_number) <= last:
            in_range.append(message_id)
    return in_range


def record_message_id(record: dict[str, Any]) -> str:
    """The id a Lambda Kinesis record is known by in the ledger: its eventID."""
    return record["eventID"]


def record_body(record: dict[str, Any]) -> str:
    return base64.b64decode(record["kinesis"]["data"]).decode("utf-8", errors="replace")


def lambda_records(
    bodies: Sequence[str], groups: Sequence[str], event_source_arn: str, region: str, *, seed: int | None = None
) -> list[dict[str, Any]]:
    """The records of a Lambda event as this stream's trigger delivers `bodies` from one shard.

    For callers that invoke a handler without a stream in between (the benchmark, the sample
    event files). `groups` gives each body's partition key; sequence numbers increase in the
    order given, as a shard's do. `seed` fixes the sequence numbers and the arrival time (see
    DeliveryStamps).
    """
    account = event_source_arn.split(":")[4]
    identity_arn = f"arn:aws:iam::{account}:role/feature-consumer"
    stamps = DeliveryStamps(seed)
    return [
        lambda_kinesis_record(
            {
                "PartitionKey": group,
                "SequenceNumber": f"{stamps.first_sequence_number + position:056d}",
                "Data": body.encode(),
                "ApproximateArrivalTimestamp": stamps.time,
            },
            "shardId-000000000000",
            event_source_arn,
            region,
            identity_arn,
        )
        for position, (body, group) in enumerate(zip(bodies, groups, strict=True))
    ]


def send_receive_ceiling(messages: int) -> float:
    """Records per second of a tight PutRecords/GetRecords loop on a one-shard stream of its own:
    what one hop of a local pipeline can reach on this emulator.

    One client thread, 10 records per put (as EventSender sends), each read back before the next
    put, so the shard is never more than one put ahead.
    """
    kinesis = boto3.client("kinesis")
    name = "benchmark-emulator-ceiling"
    with contextlib.suppress(kinesis.exceptions.ResourceInUseException):
        kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
    try:
        shard_id = kinesis.list_shards(StreamName=name)["Shards"][0]["ShardId"]
        iterator = kinesis.get_shard_iterator(StreamName=name, ShardId=shard_id, ShardIteratorType="LATEST")[
            "ShardIterator"
        ]
        sent = received = 0
        started = time.perf_counter()
        while received < messages:
            if sent < messages and sent - received < MAX_EVENTS_PER_SEND:
                count = min(MAX_EVENTS_PER_SEND, messages - sent)
                kinesis.put_records(
                    StreamName=name,
                    Records=[{"Data": f"ceiling-{sent + n}".encode(), "PartitionKey": str(n)} for n in range(count)],
                )
                sent += count
            response = kinesis.get_records(ShardIterator=iterator)
            iterator = response["NextShardIterator"]
            received += len(response["Records"])
        return messages / (time.perf_counter() - started)
    finally:
        kinesis.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


def retry_settings(timings: Any, naive: bool) -> str:
    """How a soak's plan names this source's retries: `timings` is its FaultTimings."""
    retries = "none (retried until it expires)" if naive else timings.max_receive_count - 1
    return f"MaximumRetryAttempts {retries}"
