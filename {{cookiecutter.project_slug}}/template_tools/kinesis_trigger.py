# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A local Kinesis event source mapping: reads every shard of a stream and invokes a handler as Lambda does.

What it reproduces, because the handler's ordering and failure handling depend on it:
- one poller per shard (ParallelizationFactor 1), reading from TRIM_HORIZON, or after the shard's
  checkpoint once it has one (GetShardIterator, GetRecords); a shard's next batch is only read
  once its current batch is done, so records of a shard are handed over in order;
- batches of up to `batch_size` records, gathered until the batching window closes;
- Lambda-shaped Kinesis records (eventID `shardId-...:<sequenceNumber>`, data base64-encoded)
  and contexts;
- ReportBatchItemFailures: the records before the lowest reported sequence number are done, and
  the batch is retried from that record;
- a raised exception, an invocation past the function timeout or a malformed response fail the
  whole batch; BisectBatchOnFunctionError then splits it in two and retries each half in turn.
  A timeout ends the invocation at the function timeout, whatever the handler returns later, and
  stops the handler's thread as far as a thread can be (lambda_trigger.ExecutionEnvironment): a
  function error, which Lambda retries until the records expire or MaximumRetryAttempts runs out
  (docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html, "During invocation");
- after MaximumRetryAttempts retries, the failing records' metadata (not the records) goes to
  the on-failure destination, an SQS queue, as Lambda words it, and the shard moves on.

As AWS documents, splitting a batch does not use up a retry, so a record that always fails is
isolated before the healthy records next to it could be given up on. Retries come at once, as
Lambda documents no pause between them: an endpoint outage longer than the retries sends every
batch it catches to the on-failure destination.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config

from .lambda_trigger import (
    FunctionConfiguration,
    FunctionSlot,
    Handler,
    InvalidBatchResponse,
    LambdaContext,
    batch_item_failures,
)

log = logging.getLogger(__name__)

# GetRecords returns at most 10,000 records per call.
MAX_RECORDS_PER_GET = 10_000
# Lambda polls an idle shard about once a second; a shorter pause keeps local latencies close
# to the SQS trigger's and costs the emulator little.
IDLE_POLL_SECONDS = 0.2
# Pause between GetRecords calls while a batching window is open and the shard has nothing new.
WINDOW_POLL_SECONDS = 0.05
# MaximumRetryAttempts -1: retry until the record expires from the stream.
RETRY_FOREVER = -1


@dataclass
class KinesisTriggerStats:
    """What the trigger has done so far."""

    invocations: int = 0
    records_delivered: int = 0
    # Records checkpointed as processed: the handler did not report them.
    records_done: int = 0
    # Records the handler named in batchItemFailures, on every attempt.
    records_reported_failed: int = 0
    # Invocations that failed as a whole: an exception, a timeout or a malformed response.
    failed_batches: int = 0
    # Invocations stopped at the function timeout; their late results were discarded.
    timeouts: int = 0
    retries: int = 0
    bisections: int = 0
    # Batches given up on after MaximumRetryAttempts, and their records.
    batches_to_failure_destination: int = 0
    records_to_failure_destination: int = 0


@dataclass
class _Attempt:
    """Records of a shard still to be processed, and how often they have been retried."""

    records: list[dict[str, Any]]
    retries: int = 0


@dataclass(frozen=True)
class _Outcome:
    """How one invocation went: done, failed from one record on, or failed as a whole."""

    # Index of the first record to retry; None when every record is done.
    retry_from: int | None
    function_error: bool = False


def lambda_kinesis_record(
    record: dict[str, Any], shard_id: str, stream_arn: str, region: str, identity_arn: str
) -> dict[str, Any]:
    """Turn one GetRecords record into a record of a Lambda Kinesis event, key for key."""
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": record["PartitionKey"],
            "sequenceNumber": record["SequenceNumber"],
            "data": base64.b64encode(record["Data"]).decode(),
            # Seconds since the epoch, with milliseconds, as Lambda writes it.
            "approximateArrivalTimestamp": round(record["ApproximateArrivalTimestamp"].timestamp(), 3),
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{record['SequenceNumber']}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": identity_arn,
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


class KinesisTrigger:
    """Polls every shard of one Kinesis stream and invokes a handler, as Lambda's event source mapping does."""

    def __init__(
        self,
        handler: Handler,
        *,
        stream_name: str,
        function: FunctionConfiguration,
        batch_size: int = 100,
        batching_window_seconds: float = 0,
        maximum_retry_attempts: int = RETRY_FOREVER,
        bisect_batch_on_function_error: bool = False,
        on_failure_queue_url: str | None = None,
        records_done: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        """`records_done`, if given, is called with the eventIDs of the records each checkpoint
        passes because the handler is done with them (not those given up on)."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if maximum_retry_attempts < RETRY_FOREVER:
            raise ValueError("maximum_retry_attempts must be -1 (forever) or more")
        self._handler = handler
        self._function = function
        self._batch_size = batch_size
        self._window_seconds = batching_window_seconds
        self._maximum_retry_attempts = maximum_retry_attempts
        self._bisect = bisect_batch_on_function_error
        self._on_failure_queue_url = on_failure_queue_url
        self._records_done = records_done
        self._kinesis = boto3.client("kinesis", config=Config(max_pool_connections=10))
        self._sqs = boto3.client("sqs")
        self._stream_name = stream_name
        summary = self._kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]
        self._stream_arn = summary["StreamARN"]
        # arn:aws:kinesis:<region>:<account>:stream/<name>
        _, _, _, self._region, self._account_id, _ = self._stream_arn.split(":", 5)
        self._function_arn = f"arn:aws:lambda:{self._region}:{self._account_id}:function:{function.function_name}"
        # The execution role the records name; local mode runs as no role at all.
        self._identity_arn = f"arn:aws:iam::{self._account_id}:role/{function.function_name}"
        self._shard_ids = [shard["ShardId"] for shard in self._kinesis.list_shards(StreamName=stream_name)["Shards"]]
        # The sequence number each shard has been processed up to (None: nothing yet).
        self._checkpoints: dict[str, str | None] = dict.fromkeys(self._shard_ids)
        self._stats = KinesisTriggerStats()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._pollers: list[threading.Thread] = []
        # Each shard's poller invokes in an execution environment of its own.
        self._slots: dict[str, FunctionSlot] = {}

    @property
    def stats(self) -> KinesisTriggerStats:
        """A snapshot of the counters."""
        with self._lock:
            return KinesisTriggerStats(**asdict(self._stats))

    @property
    def shard_ids(self) -> list[str]:
        return list(self._shard_ids)

    def start(self) -> KinesisTrigger:
        """Start one poller per shard."""
        self._stopping.clear()
        self._slots = {
            shard_id: FunctionSlot(self._handler, f"kinesis-invocations-{shard_id}") for shard_id in self._shard_ids
        }
        self._pollers = [
            threading.Thread(target=self._poll, args=(shard_id,), name=f"kinesis-poller-{shard_id}", daemon=True)
            for shard_id in self._shard_ids
        ]
        for poller in self._pollers:
            poller.start()
        return self

    def stop(self) -> None:
        """Stop polling, let running invocations finish or time out, and wait for every poller."""
        self._stopping.set()
        for poller in self._pollers:
            poller.join()
        for slot in self._slots.values():
            slot.close()
        self._pollers, self._slots = [], {}

    def __enter__(self) -> KinesisTrigger:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def backlog(self) -> int:
        """Records of the stream after the shards' checkpoints: not yet processed or given up on."""
        waiting = 0
        for shard_id in self._shard_ids:
            iterator = self._iterator(shard_id)
            while iterator:
                response = self._kinesis.get_records(ShardIterator=iterator, Limit=MAX_RECORDS_PER_GET)
                waiting += len(response["Records"])
                if not response["Records"]:
                    break
                iterator = response.get("NextShardIterator")
        return waiting

    def _iterator(self, shard_id: str) -> str:
        with self._lock:
            checkpoint = self._checkpoints[shard_id]
        position: dict[str, str] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "StartingSequenceNumber": checkpoint}
            if checkpoint is not None
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        return self._kinesis.get_shard_iterator(StreamName=self._stream_name, ShardId=shard_id, **position)[
            "ShardIterator"
        ]

    def _poll(self, shard_id: str) -> None:
        iterator: str | None = None
        while not self._stopping.is_set():
            try:
                if iterator is None:
                    iterator = self._iterator(shard_id)
                batch, iterator = self._gather_batch(iterator)
                if batch:
                    self._process(shard_id, batch)
                else:
                    self._stopping.wait(IDLE_POLL_SECONDS)
            except Exception:
                # A poller that died would stall its shard; log, re-read from the checkpoint, go on.
                log.exception("Kinesis poller error on %s; reading again from its checkpoint", shard_id)
                iterator = None
                self._stopping.wait(IDLE_POLL_SECONDS)

    def _gather_batch(self, iterator: str) -> tuple[list[dict[str, Any]], str | None]:
        batch: list[dict[str, Any]] = []
        window_closes: float | None = None
        while iterator and not self._stopping.is_set():
            response = self._kinesis.get_records(
                ShardIterator=iterator, Limit=min(self._batch_size - len(batch), MAX_RECORDS_PER_GET)
            )
            iterator = response.get("NextShardIterator")
            batch.extend(response["Records"])
            if not batch or len(batch) >= self._batch_size or self._window_seconds <= 0:
                break
            # The batching window opens with the first record, as Lambda's does.
            if window_closes is None:
                window_closes = time.monotonic() + self._window_seconds
            remaining = window_closes - time.monotonic()
            if remaining <= 0:
                break
            if not response["Records"]:
                time.sleep(min(remaining, WINDOW_POLL_SECONDS))
        return batch, iterator

    def _process(self, shard_id: str, batch: list[dict[str, Any]]) -> None:
        """Invoke until every record of the batch is done or given up on, in order."""
        pending = deque([_Attempt(batch)])
        while pending and not self._stopping.is_set():
            attempt = pending[0]
            outcome = self._invoke(shard_id, attempt.records)
            if outcome.retry_from is None:
                pending.popleft()
                self._checkpoint(shard_id, attempt.records, done=True)
                continue
            if outcome.retry_from:
                self._checkpoint(shard_id, attempt.records[: outcome.retry_from], done=True)
                attempt.records = attempt.records[outcome.retry_from :]
            if outcome.function_error and self._bisect and len(attempt.records) > 1:
                middle = len(attempt.records) // 2
                pending.popleft()
                halves = [attempt.records[:middle], attempt.records[middle:]]
                pending.extendleft(_Attempt(half, attempt.retries) for half in reversed(halves))
                self._count(bisections=1)
                continue
            if self._maximum_retry_attempts != RETRY_FOREVER and attempt.retries >= self._maximum_retry_attempts:
                pending.popleft()
                self._give_up(shard_id, attempt, outcome)
                self._checkpoint(shard_id, attempt.records, done=False)
                continue
            attempt.retries += 1
            self._count(retries=1)

    def _invoke(self, shard_id: str, records: list[dict[str, Any]]) -> _Outcome:
        event_records = [
            lambda_kinesis_record(record, shard_id, self._stream_arn, self._region, self._identity_arn)
            for record in records
        ]
        context = LambdaContext(self._function, self._region, self._account_id)
        self._count(invocations=1, records_delivered=len(records))
        outcome = self._slots[shard_id].invoke({"Records": event_records}, context)
        if outcome.timed_out:
            # As Lambda: a function error for the whole batch, whatever the handler returns later.
            log.error(
                "%s timed out after %g s (request %s); %d records of %s are retried",
                self._function.function_name,
                self._function.timeout_seconds,
                context.aws_request_id,
                len(records),
                shard_id,
            )
            self._count(failed_batches=1, timeouts=1)
            return _Outcome(retry_from=0, function_error=True)
        if outcome.error is not None:
            log.error(
                "%s raised (request %s); %d records of %s are retried",
                self._function.function_name,
                context.aws_request_id,
                len(records),
                shard_id,
                exc_info=outcome.error,
            )
            self._count(failed_batches=1)
            return _Outcome(retry_from=0, function_error=True)
        response = outcome.response
        sequence_numbers = [record["SequenceNumber"] for record in records]
        try:
            failed = batch_item_failures(response, sequence_numbers)
        except InvalidBatchResponse as error:
            log.error("%s: %s; all %d records count as failed", self._function.function_name, error, len(records))
            self._count(failed_batches=1)
            return _Outcome(retry_from=0)
        if not failed:
            return _Outcome(retry_from=None)
        self._count(records_reported_failed=len(failed))
        # Lambda checkpoints before the lowest reported sequence number and retries from there.
        lowest = min(failed, key=int)
        return _Outcome(retry_from=sequence_numbers.index(lowest))

    def _checkpoint(self, shard_id: str, records: list[dict[str, Any]], *, done: bool) -> None:
        if not records:
            return
        with self._lock:
            self._checkpoints[shard_id] = records[-1]["SequenceNumber"]
            if done:
                self._stats.records_done += len(records)
        if done and self._records_done is not None:
            self._records_done([f"{shard_id}:{record['SequenceNumber']}" for record in records])

    def _give_up(self, shard_id: str, attempt: _Attempt, outcome: _Outcome) -> None:
        """Send the failing records' metadata to the on-failure destination, as Lambda does."""
        first, last = attempt.records[0], attempt.records[-1]
        log.error(
            "%s: giving up on %d records of %s (%s to %s) after %d retries",
            self._function.function_name,
            len(attempt.records),
            shard_id,
            first["SequenceNumber"],
            last["SequenceNumber"],
            attempt.retries,
        )
        self._count(batches_to_failure_destination=1, records_to_failure_destination=len(attempt.records))
        if self._on_failure_queue_url is None:
            return
        response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
        if outcome.function_error:
            response_context["functionError"] = "Unhandled"
        invocation_record = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self._function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempt.retries + 1,
            },
            "responseContext": response_context,
            "version": "1.0",
            "timestamp": _iso(datetime.now(UTC)),
            "KinesisBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": first["SequenceNumber"],
                "endSequenceNumber": last["SequenceNumber"],
                "approximateArrivalOfFirstRecord": _iso(first["ApproximateArrivalTimestamp"]),
                "approximateArrivalOfLastRecord": _iso(last["ApproximateArrivalTimestamp"]),
                "batchSize": len(attempt.records),
                "streamArn": self._stream_arn,
            },
        }
        self._sqs.send_message(QueueUrl=self._on_failure_queue_url, MessageBody=json.dumps(invocation_record))

    def _count(self, **increments: int) -> None:
        with self._lock:
            for name, increment in increments.items():
                setattr(self._stats, name, getattr(self._stats, name) + increment)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
