# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A local SQS event source mapping: polls a queue and invokes a handler with Lambda's semantics.

What it reproduces, because the handler's failure handling depends on it: up to
`maximum_concurrency` concurrent invocations; batches gathered up to `batch_size` records or
until the batching window closes; Lambda-shaped SQS events and contexts; ReportBatchItemFailures
(only the records the handler did not name are deleted, and a raised exception, an invocation
past the function timeout or a malformed response fails the whole batch). Failed records stay in
the queue, so its visibility timeout and redrive policy decide when they come back and when they
move to the dead-letter queue, as in AWS.

The function timeout ends an invocation as Lambda ends it: at the timeout, whatever the handler
returns later. The Lambda Developer Guide: "if Lambda encounters an error at any point while
processing a batch, all messages in that batch return to the queue. After the visibility timeout,
the messages become visible to Lambda again" (docs.aws.amazon.com/lambda/latest/dg/
services-sqs-configure.html; services-sqs-errorhandling.html), and its earlier retry page named
the timeout outright: "If the invocation fails or times out, every message in the batch will be
returned to the queue" (awsdocs/aws-lambda-developer-guide, retries-on-errors.md). So nothing of
a timed-out batch is deleted and each record's receive count grows on its next delivery; the
handler's thread is stopped as far as a thread can be (see ExecutionEnvironment for what still
differs).

Time can be scaled: SQS takes visibility timeouts in whole seconds, so a test that wants a
record back after 0.75 s gives the queue a longer timeout and the trigger a shorter one, and the
trigger makes the record visible itself (ChangeMessageVisibility 0) when the shorter one ends.
"""

from __future__ import annotations

import base64
import ctypes
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.template_runtime.aws_limits import SQS_MAX_BATCH_ENTRIES

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any], "LambdaContext"], Any]

# How long one receive waits for records when the queue is empty; stop() interrupts it.
IDLE_POLL_SECONDS = 1
# Pause between a poller's short receives while it waits for records (see SqsTrigger._receive).
SHORT_POLL_PAUSE_SECONDS = 0.05
# moto ends the visibility timeouts of one receive's messages one after the other (each was
# marked received a little after the one before), and a receive that falls between two of them
# hands out a FIFO group's later records first. So the trigger ends the timeout of a FIFO record
# its invocation is done with (and did not delete) itself, this much before moto would, for all
# of them at once.
FIFO_EARLY_END_SECONDS = 0.5
# Seeded records (sample event files) are delivered at this instant plus their seed in seconds.
SEEDED_DELIVERY_TIME = datetime(2026, 1, 1, tzinfo=UTC)
# How long stop() waits for an idle execution environment's thread to end.
ENVIRONMENT_CLOSE_SECONDS = 5
# Lambda's limit on an on-demand function's Init phase, which the function timeout does not count.
INIT_PHASE_LIMIT_SECONDS = 10
# How often an invocation's wait looks at the time its context has left.
TIMEOUT_RECHECK_SECONDS = 0.1


@dataclass(frozen=True)
class FunctionConfiguration:
    """The Lambda function the trigger invokes: what its context reports and its timeout."""

    function_name: str
    # Lambda takes whole seconds; scaled time in tests makes it a fraction.
    timeout_seconds: float
    memory_size_mb: int


class LambdaContext:
    """The context object Lambda's Python runtime passes to a handler."""

    def __init__(self, function: FunctionConfiguration, region: str, account_id: str) -> None:
        self._deadline = time.monotonic() + function.timeout_seconds
        self.function_name = function.function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function.function_name}"
        # The runtime reads this from AWS_LAMBDA_FUNCTION_MEMORY_SIZE, so it is a string there too.
        self.memory_limit_in_mb = str(function.memory_size_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.function_name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda would stop this invocation."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    @contextmanager
    def init_phase(self) -> Iterator[None]:
        """Leave a cold start's Init phase (importing the handler's module) out of the timeout.

        Lambda runs Init before the invocation and limits it to 10 s of its own; only an Init
        that overruns is run again within the invocation, under the function timeout ("Init
        phase" in docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html). A
        handler this trigger starts in a fresh process imports its module inside this block: up
        to INIT_PHASE_LIMIT_SECONDS of it does not count.
        """
        started = time.monotonic()
        self._deadline += INIT_PHASE_LIMIT_SECONDS
        try:
            yield
        finally:
            self._deadline -= INIT_PHASE_LIMIT_SECONDS - min(time.monotonic() - started, INIT_PHASE_LIMIT_SECONDS)


class FunctionTimedOut(BaseException):  # noqa: N818 - named as Lambda reports it: "Task timed out"
    """Raised inside a handler's thread once its invocation has run past the function timeout.

    A BaseException, so a handler's own `except Exception` cannot swallow it and carry on.
    """


@dataclass(frozen=True)
class InvocationOutcome:
    """How one invocation ended: a response, an exception, or the function timeout."""

    response: Any = None
    error: Exception | None = None
    timed_out: bool = False


@dataclass
class _Invocation:
    event: dict[str, Any]
    context: LambdaContext
    done: threading.Event = field(default_factory=threading.Event)
    response: Any = None
    error: Exception | None = None


class ExecutionEnvironment:
    """One Lambda execution environment: a thread that runs the handler, one invocation at a time.

    Lambda stops an invocation at the function timeout: the caller gets no response, the event
    source counts the whole batch as failed, and the execution environment is reset before it
    runs again, so nothing the handler would still have done happens (the execution environment
    lifecycle: docs.aws.amazon.com/lambda/latest/dg/lambda-runtime-environment.html). Here the
    handler runs in this process, on the environment's thread: at the timeout `invoke` stops waiting and
    answers timed_out, whatever the handler returns later, and raises FunctionTimedOut in the
    handler's thread, which stops it at its next Python instruction. The environment is then
    retired, as Lambda resets it; the trigger starts a fresh one for its next invocation.

    What a thread cannot reproduce (the gap to Lambda): a handler blocked in a call (a socket
    read, a wait on a future or a lock) only stops once that call returns; threads the handler
    started itself (its endpoint and publishing pools) are not stopped, so a call they have in
    flight may still land after the timeout; and module state (clients, caches) survives, where
    Lambda's next invocation would be a cold start.
    """

    def __init__(self, handler: Handler, name: str) -> None:
        self._handler = handler
        self._pending: queue.SimpleQueue[_Invocation | None] = queue.SimpleQueue()
        # The invocation the thread is in now; read without a lock (see _stop).
        self._running: _Invocation | None = None
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def invoke(self, event: dict[str, Any], context: LambdaContext) -> InvocationOutcome:
        """Run the handler on `event`; wait no longer than the context's remaining time."""
        invocation = _Invocation(event, context)
        self._pending.put(invocation)
        # In short waits: an Init phase moves the timeout while the handler runs.
        while not invocation.done.wait(min(context.get_remaining_time_in_millis() / 1000, TIMEOUT_RECHECK_SECONDS)):
            if context.get_remaining_time_in_millis() <= 0:
                self._stop(invocation)
                return InvocationOutcome(timed_out=True)
        return InvocationOutcome(invocation.response, invocation.error)

    def close(self, wait_seconds: float = 0) -> None:
        """Let the thread end once it is done with what it runs, waiting up to `wait_seconds` for it."""
        self._pending.put(None)
        self._thread.join(wait_seconds)

    def _stop(self, invocation: _Invocation) -> None:
        # The environment is retired whatever happens next: a FunctionTimedOut that arrives after
        # the handler returned only ends the retired thread early, which is what retiring means.
        if self._running is invocation and self._thread.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._thread.ident), ctypes.py_object(FunctionTimedOut)
            )
        self.close()

    def _serve(self) -> None:
        try:
            while (invocation := self._pending.get()) is not None:
                self._running = invocation
                try:
                    invocation.response = self._handler(invocation.event, invocation.context)
                except Exception as error:  # noqa: BLE001 - Lambda reports any exception as a function error
                    invocation.error = error
                self._running = None
                invocation.done.set()
        except FunctionTimedOut:
            log.info("handler stopped at the function timeout (%s)", threading.current_thread().name)


class FunctionSlot:
    """One of the function's concurrent executions: runs each invocation in an execution
    environment, and starts a fresh environment after one timed out, as Lambda resets it."""

    def __init__(self, handler: Handler, name: str) -> None:
        self._handler = handler
        self._name = name
        self._environment: ExecutionEnvironment | None = None
        self._environments_started = 0

    def invoke(self, event: dict[str, Any], context: LambdaContext) -> InvocationOutcome:
        if self._environment is None:
            self._environments_started += 1
            self._environment = ExecutionEnvironment(self._handler, f"{self._name}-env-{self._environments_started}")
        outcome = self._environment.invoke(event, context)
        if outcome.timed_out:
            # Retired by invoke; its thread ends on its own.
            self._environment = None
        return outcome

    def close(self) -> None:
        """End the environment's thread; it runs nothing once the pollers have stopped."""
        if self._environment is not None:
            self._environment.close(wait_seconds=ENVIRONMENT_CLOSE_SECONDS)
            self._environment = None


class InvalidBatchResponse(ValueError):
    """The handler's response cannot be read as a partial batch response; Lambda fails the batch."""


def batch_item_failures(response: Any, message_ids: Sequence[str]) -> set[str]:
    """Return the message ids a ReportBatchItemFailures response asks Lambda to keep.

    None, `{}`, a missing, null or empty `batchItemFailures` mean full success. Anything Lambda
    could not serialise or read, and an empty, missing or unknown `itemIdentifier`, raise
    InvalidBatchResponse: Lambda then keeps every record of the batch.
    """
    try:
        # Lambda only sees the JSON form: a set or a datetime in the response fails there.
        response = json.loads(json.dumps(response))
    except (TypeError, ValueError) as error:
        raise InvalidBatchResponse(f"response is not JSON serialisable: {error}") from None
    if response is None:
        return set()
    if not isinstance(response, dict):
        raise InvalidBatchResponse(f"response must be an object, got {type(response).__name__}")
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        raise InvalidBatchResponse("batchItemFailures must be a list")
    known = set(message_ids)
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not isinstance(identifier, str) or not identifier:
            raise InvalidBatchResponse(f"batch item failure without a valid itemIdentifier: {failure!r}")
        if identifier not in known:
            raise InvalidBatchResponse(f"itemIdentifier {identifier!r} is not a message of this batch")
        failed.add(identifier)
    return failed


class DeliveryStamps:
    """What a trigger stamps on the records it delivers that no body decides: ids, the delivery
    time, the first sequence number.

    Without a seed, real ones: unique and increasing from one batch to the next (the benchmark's
    events). With a seed, the same ones every time, so a file of sample events written from
    unchanged samples comes out byte for byte the same.
    """

    def __init__(self, seed: int | None = None) -> None:
        self._random = None if seed is None else random.Random(seed)
        self.time = datetime.now(UTC) if seed is None else SEEDED_DELIVERY_TIME + timedelta(seconds=seed)
        # Nanoseconds times 1000, as a shard's or a FIFO queue's numbers grow: never twice the same.
        self.first_sequence_number = (
            time.time_ns() * 1000 if seed is None else int(self.time.timestamp()) * 1_000_000_000_000
        )

    @property
    def time_ms(self) -> str:
        """The delivery time in epoch milliseconds, as SQS writes its timestamp attributes."""
        return str(int(self.time.timestamp() * 1000))

    def unique_id(self) -> uuid.UUID:
        """A random id (a message id, a receipt handle), drawn from the seed when there is one."""
        if self._random is None:
            return uuid.uuid4()
        return uuid.UUID(int=self._random.getrandbits(128), version=4)


def lambda_sqs_record(message: dict[str, Any], event_source_arn: str, region: str) -> dict[str, Any]:
    """Turn one ReceiveMessage result into a record of a Lambda SQS event, key for key."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _lambda_message_attribute(value) for name, value in message.get("MessageAttributes", {}).items()
        },
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    record.update(
        md5OfBody=message["MD5OfBody"],
        eventSource="aws:sqs",
        eventSourceARN=event_source_arn,
        awsRegion=region,
    )
    return record


def _lambda_message_attribute(value: dict[str, Any]) -> dict[str, Any]:
    # Lambda spells SQS's attribute fields in camel case, always lists both list fields and
    # carries binary values base64-encoded, as JSON must.
    attribute: dict[str, Any] = {}
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    attribute["stringListValues"] = list(value.get("StringListValues", []))
    attribute["binaryListValues"] = [base64.b64encode(item).decode() for item in value.get("BinaryListValues", [])]
    attribute["dataType"] = value["DataType"]
    return attribute


@dataclass
class TriggerStats:
    """What the trigger has done so far."""

    invocations: int = 0
    records_delivered: int = 0
    records_deleted: int = 0
    # Records the handler named in batchItemFailures (they stay in the queue).
    records_reported_failed: int = 0
    # Batches that failed as a whole: an exception, a timeout or a malformed response.
    failed_batches: int = 0
    # Invocations stopped at the function timeout; their late results were discarded.
    timeouts: int = 0


class SqsTrigger:
    """Polls one SQS queue and invokes a handler, as Lambda's SQS event source mapping does."""

    def __init__(
        self,
        handler: Handler,
        *,
        queue_url: str,
        function: FunctionConfiguration,
        batch_size: int = 10,
        batching_window_seconds: float = 0,
        maximum_concurrency: int = 2,
        records_done: Callable[[Sequence[str]], None] | None = None,
        fifo: bool = False,
        visibility_timeout_seconds: float | None = None,
    ) -> None:
        """`records_done`, if given, is called with the message ids of each batch's records the
        handler did not report as failed, once they are deleted: the handler is done with them.

        The pollers take turns to receive (invocations still run concurrently): moto does not
        lock concurrent receives, so two at once can hand one message to both, a duplicate SQS
        never makes, or records of one FIFO message group to two invocations. Taking turns also
        spares moto's receive the races that make it answer 500, and costs no throughput: the
        receives are short, and the invocations they feed still overlap.

        `fifo` works around one more moto gap that would break a FIFO queue's order, which SQS
        keeps: once the visibility timeout of several failed records of a group ends, moto hands
        out the group's later records first. So each one is made visible explicitly, with
        ChangeMessageVisibility 0, before the next receive and a little before its timeout ends
        (see FIFO_EARLY_END_SECONDS).

        `fifo` also gives each record the SequenceNumber SQS would, which moto does not (see
        _number_in_send_order).

        `visibility_timeout_seconds`, if given, is the timeout the trigger keeps, at most the
        queue's own: the trigger makes each record it did not delete visible again itself once
        that much time has passed since it was received. Tests use it to scale time down.
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if maximum_concurrency < 1:
            raise ValueError("maximum_concurrency must be at least 1")
        self._handler = handler
        self._queue_url = queue_url
        self._function = function
        self._batch_size = batch_size
        self._window_seconds = batching_window_seconds
        self._concurrency = maximum_concurrency
        self._records_done = records_done
        self._receive_turn = threading.Lock()
        self._fifo = fifo
        # FIFO only: message id -> the SequenceNumber its records carry (see _number_in_send_order),
        # until the message is deleted.
        self._sequence_numbers: dict[str, int] = {}
        self._next_sequence_number = DeliveryStamps().first_sequence_number
        # Receipt handle -> when its visibility timeout ends, for records not deleted yet; kept
        # only when the trigger ends timeouts itself (see _ends_timeouts).
        self._invisible_until: dict[str, float] = {}
        # One client for every poller (botocore clients are thread safe), with a connection
        # per poller so their deletes and visibility changes do not queue behind each other.
        self._sqs = boto3.client("sqs", config=Config(max_pool_connections=maximum_concurrency + 2))
        self._event_source_arn = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        # arn:aws:sqs:<region>:<account>:<name>
        _, _, _, self._region, self._account_id, _ = self._event_source_arn.split(":", 5)
        queue_timeout = int(
            self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["VisibilityTimeout"])["Attributes"][
                "VisibilityTimeout"
            ]
        )
        if visibility_timeout_seconds is not None and not 0 <= visibility_timeout_seconds <= queue_timeout:
            raise ValueError(
                f"visibility_timeout_seconds must be from 0 to the queue's own ({queue_timeout} s), "
                f"got {visibility_timeout_seconds}"
            )
        self._visibility_timeout = queue_timeout if visibility_timeout_seconds is None else visibility_timeout_seconds
        # A shorter timeout than the queue's is ended by the trigger, and so is a FIFO queue's
        # (see FIFO_EARLY_END_SECONDS); otherwise the queue ends timeouts itself, as in AWS.
        self._ends_timeouts = fifo or self._visibility_timeout < queue_timeout
        # FIFO only, when the queue's own timeout would end at the same time: end it earlier.
        self._early_end_seconds = FIFO_EARLY_END_SECONDS if fifo and self._visibility_timeout == queue_timeout else 0.0
        self._stats = TriggerStats()
        self._stats_lock = threading.Lock()
        self._stopping = threading.Event()
        self._pollers: list[threading.Thread] = []
        self._slots: list[FunctionSlot] = []

    @property
    def stats(self) -> TriggerStats:
        """A snapshot of the counters."""
        with self._stats_lock:
            return TriggerStats(**asdict(self._stats))

    def start(self) -> SqsTrigger:
        """Start the pollers."""
        self._stopping.clear()
        # One execution environment per poller at a time, as one poller runs one invocation at a time.
        self._slots = [FunctionSlot(self._handler, f"sqs-invocations-{number}") for number in range(self._concurrency)]
        self._pollers = [
            threading.Thread(target=self._poll, args=(slot,), name=f"sqs-poller-{number}", daemon=True)
            for number, slot in enumerate(self._slots)
        ]
        for poller in self._pollers:
            poller.start()
        return self

    def stop(self) -> None:
        """Stop polling, let running invocations finish or time out, and wait for every poller."""
        self._stopping.set()
        for poller in self._pollers:
            poller.join()
        for slot in self._slots:
            slot.close()
        self._pollers, self._slots = [], []

    def backlog(self) -> int:
        """Records still in the queue: waiting, in flight or delayed."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        attributes = self._sqs.get_queue_attributes(QueueUrl=self._queue_url, AttributeNames=names)["Attributes"]
        return sum(int(attributes.get(name, 0)) for name in names)

    def __enter__(self) -> SqsTrigger:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _poll(self, slot: FunctionSlot) -> None:
        while not self._stopping.is_set():
            try:
                messages = self._gather_batch()
                if messages:
                    self._invoke(slot, messages)
            except Exception:
                # A poller that died would quietly lower the concurrency; log and go on.
                log.exception("SQS poller error; polling again")
                self._stopping.wait(IDLE_POLL_SECONDS)

    def _gather_batch(self) -> list[dict[str, Any]]:
        batch = self._receive(min(self._batch_size, SQS_MAX_BATCH_ENTRIES), IDLE_POLL_SECONDS)
        if not batch or self._window_seconds <= 0:
            return batch
        # The batching window opens with the first record, as Lambda's does.
        window_closes = time.monotonic() + self._window_seconds
        while len(batch) < self._batch_size and not self._stopping.is_set():
            remaining = window_closes - time.monotonic()
            if remaining <= 0:
                break
            batch.extend(self._receive(min(self._batch_size - len(batch), SQS_MAX_BATCH_ENTRIES), remaining))
        return batch

    def _receive(self, max_messages: int, wait_seconds: float) -> list[dict[str, Any]]:
        """Up to `max_messages` messages, as soon as there are some or once `wait_seconds` have passed.

        Lambda long-polls. Here the pollers take turns to make short receives and wait between
        them outside their turn: a long poll in one's turn would keep the others waiting, and
        moto's long poll does not wake for records whose visibility timeout ends, only for new
        ones. On a FIFO queue it would also let moto end a group's timeouts itself, and hand out
        the group's later records first.
        """
        gives_up = time.monotonic() + wait_seconds
        while True:
            with self._receive_turn:
                # A poller that waited its turn through stop() must not receive any more.
                if self._stopping.is_set():
                    return []
                if self._ends_timeouts:
                    self._make_visible_what_is_due()
                # Taken before the call, so a timeout is never thought to end later than it does.
                invisible_until = time.monotonic() + self._visibility_timeout
                response = self._sqs.receive_message(
                    QueueUrl=self._queue_url,
                    MaxNumberOfMessages=max_messages,
                    WaitTimeSeconds=0,
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                messages = response.get("Messages", [])
                if self._fifo:
                    self._number_in_send_order(messages)
                if self._ends_timeouts:
                    with self._stats_lock:
                        self._invisible_until.update((m["ReceiptHandle"], invisible_until) for m in messages)
            remaining = gives_up - time.monotonic()
            if messages or remaining <= 0:
                return messages
            self._stopping.wait(min(remaining, SHORT_POLL_PAUSE_SECONDS))

    def _number_in_send_order(self, messages: list[dict[str, Any]]) -> None:
        """Give each FIFO message the SequenceNumber SQS would: increasing in send order within its
        group, and the same on every delivery.

        SQS: "The length of SequenceNumber is 128 bits. SequenceNumber continues to increase for a
        particular MessageGroupId" (SQS API Reference, SendMessage and ReceiveMessage); the handler
        orders two events of one key in the same millisecond by it. moto 5 draws 20 random digits
        instead, and only for a message sent with an explicit MessageDeduplicationId, so it would
        keep the older of such two half the time. moto hands out a group's messages in send order
        (never one while an earlier one of its group is in flight), so the order in which the
        trigger first sees them, in its receives' turns, is their send order. Called in the turn.
        """
        with self._stats_lock:
            for message in messages:
                number = self._sequence_numbers.get(message["MessageId"])
                if number is None:
                    number = self._sequence_numbers[message["MessageId"]] = self._next_sequence_number
                    self._next_sequence_number += 1
                message.setdefault("Attributes", {})["SequenceNumber"] = str(number)

    def _make_visible_what_is_due(self) -> None:
        now = time.monotonic()
        with self._stats_lock:
            due = [handle for handle, until in self._invisible_until.items() if until <= now]
            for handle in due:
                del self._invisible_until[handle]
        for start in range(0, len(due), SQS_MAX_BATCH_ENTRIES):
            self._sqs.change_message_visibility_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(position), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                    for position, handle in enumerate(due[start : start + SQS_MAX_BATCH_ENTRIES])
                ],
            )

    def _invoke(self, slot: FunctionSlot, messages: list[dict[str, Any]]) -> None:
        records = [lambda_sqs_record(message, self._event_source_arn, self._region) for message in messages]
        context = LambdaContext(self._function, self._region, self._account_id)
        self._count(invocations=1, records_delivered=len(records))
        outcome = slot.invoke({"Records": records}, context)
        if outcome.timed_out:
            # As Lambda: the whole batch failed, nothing is deleted, whatever the handler returns later.
            log.error(
                "%s timed out after %g s (request %s); all %d records return after the visibility timeout",
                self._function.function_name,
                self._function.timeout_seconds,
                context.aws_request_id,
                len(records),
            )
            self._count(failed_batches=1, timeouts=1)
            self._end_timeouts_early(messages)
            return
        if outcome.error is not None:
            log.error(
                "%s raised (request %s); all %d records return after the visibility timeout",
                self._function.function_name,
                context.aws_request_id,
                len(records),
                exc_info=outcome.error,
            )
            self._count(failed_batches=1)
            self._end_timeouts_early(messages)
            return
        response = outcome.response
        message_ids = [record["messageId"] for record in records]
        try:
            failed = batch_item_failures(response, message_ids)
        except InvalidBatchResponse as error:
            log.error("%s: %s; all %d records count as failed", self._function.function_name, error, len(records))
            self._count(failed_batches=1)
            self._end_timeouts_early(messages)
            return
        self._count(records_reported_failed=len(failed))
        self._delete([message for message in messages if message["MessageId"] not in failed])
        self._end_timeouts_early([message for message in messages if message["MessageId"] in failed])

    def _end_timeouts_early(self, messages: list[dict[str, Any]]) -> None:
        """FIFO only: have the next receive end these records' timeouts, FIFO_EARLY_END_SECONDS early."""
        if not self._early_end_seconds:
            return
        with self._stats_lock:
            for message in messages:
                handle = message["ReceiptHandle"]
                if handle in self._invisible_until:
                    self._invisible_until[handle] -= self._early_end_seconds

    def _delete(self, messages: list[dict[str, Any]]) -> None:
        for start in range(0, len(messages), SQS_MAX_BATCH_ENTRIES):
            chunk = messages[start : start + SQS_MAX_BATCH_ENTRIES]
            response = self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(position), "ReceiptHandle": message["ReceiptHandle"]}
                    for position, message in enumerate(chunk)
                ],
            )
            for failure in response.get("Failed", []):
                log.warning("could not delete %s: %s", chunk[int(failure["Id"])]["MessageId"], failure.get("Message"))
            deleted = response.get("Successful", [])
            self._count(records_deleted=len(deleted))
            with self._stats_lock:
                for entry in deleted:
                    message = chunk[int(entry["Id"])]
                    self._invisible_until.pop(message["ReceiptHandle"], None)
                    # A message the queue's redrive policy moves keeps its number: a few ints.
                    self._sequence_numbers.pop(message["MessageId"], None)
            if self._records_done is not None and deleted:
                self._records_done([chunk[int(entry["Id"])]["MessageId"] for entry in deleted])

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            for name, increment in increments.items():
                setattr(self._stats, name, getattr(self._stats, name) + increment)
