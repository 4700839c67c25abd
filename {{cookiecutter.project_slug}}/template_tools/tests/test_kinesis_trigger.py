# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The local Kinesis trigger behaves like Lambda's stream event source mapping, which local mode relies on."""

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable

import boto3
import pytest

from template_tools.emulator import ensure_dead_letter_queue, receive_and_delete
from template_tools.kinesis_trigger import KinesisTrigger
from template_tools.lambda_trigger import FunctionConfiguration

# Every test here polls a stream in the emulator and waits on the trigger.
pytestmark = pytest.mark.slow

WAIT_SECONDS = 30
FUNCTION = FunctionConfiguration(function_name="test-dev-handle_feature_events", timeout_seconds=10, memory_size_mb=512)


@pytest.fixture
def kinesis(emulator):
    return boto3.client("kinesis")


@pytest.fixture
def stream(kinesis) -> str:
    """A fresh one-shard stream, so the order of all its records is the order they were put."""
    name = f"features-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
    return name


@pytest.fixture
def dead_letter_url(emulator) -> str:
    return ensure_dead_letter_queue(boto3.client("sqs"), f"dead-letters-{uuid.uuid4().hex[:8]}")


class RecordingHandler:
    """A handler that records every delivery and answers with whatever `respond` decides."""

    def __init__(self, respond: Callable[[list[dict]], object] = lambda records: None) -> None:
        self.respond = respond
        self.events: list[dict] = []
        self.contexts: list[object] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict, context: object) -> object:
        with self._lock:
            self.events.append(event)
            self.contexts.append(context)
        return self.respond(event["Records"])

    def batches(self) -> list[list[str]]:
        """The bodies of each invocation, in order."""
        with self._lock:
            return [[body_of(record) for record in event["Records"]] for event in self.events]


def body_of(record: dict) -> str:
    return base64.b64decode(record["kinesis"]["data"]).decode()


def put(kinesis, stream: str, bodies: list[str], key: str = "user-1") -> list[str]:
    """Put the bodies in order under one partition key; return their sequence numbers."""
    response = kinesis.put_records(
        StreamName=stream, Records=[{"Data": body.encode(), "PartitionKey": key} for body in bodies]
    )
    assert not response["FailedRecordCount"]
    return [entry["SequenceNumber"] for entry in response["Records"]]


def wait_until(condition: Callable[[], object]) -> None:
    """Poll until the condition holds; the generous limit only stops a broken test hanging."""
    give_up = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < give_up, "condition not reached"
        time.sleep(0.05)


def trigger(handler, stream: str, **options) -> KinesisTrigger:
    options.setdefault("function", FUNCTION)
    options.setdefault("batch_size", 10)
    return KinesisTrigger(handler, stream_name=stream, **options)


def test_a_partial_failure_retries_from_the_lowest_reported_record_and_not_before(kinesis, stream):
    """Records before the checkpoint are done; the reported one and every later one come again."""
    bodies = [f"r{n}" for n in range(6)]
    sequence_numbers = put(kinesis, stream, bodies)

    def fail_r2_and_r4_once(records):
        if len(records) < 6:
            return {"batchItemFailures": []}
        named = [sequence_numbers[4], sequence_numbers[2]]
        return {"batchItemFailures": [{"itemIdentifier": number} for number in named]}

    handler = RecordingHandler(fail_r2_and_r4_once)
    with trigger(handler, stream) as running:
        wait_until(lambda: running.stats.records_done == 6)

    assert handler.batches() == [bodies, bodies[2:]]
    assert running.stats.retries == 1
    assert running.stats.records_reported_failed == 2


def test_an_exception_splits_the_batch_and_retries_each_half_in_order(kinesis, stream):
    """BisectBatchOnFunctionError isolates the failing record; the shard's order holds throughout."""
    bodies = [f"r{n}" for n in range(4)]
    put(kinesis, stream, bodies)
    failures_left = {"r3": 2}

    def raise_while_r3_fails(records):
        for record in records:
            if failures_left.get(body_of(record), 0):
                failures_left[body_of(record)] -= 1
                raise RuntimeError("endpoint unreachable")

    handler = RecordingHandler(raise_while_r3_fails)
    with trigger(handler, stream, maximum_retry_attempts=3, bisect_batch_on_function_error=True) as running:
        wait_until(lambda: running.stats.records_done == 4)

    # [r0..r3] fails and splits; [r0, r1] passes; [r2, r3] fails and splits; r2 passes, then r3.
    assert handler.batches() == [bodies, ["r0", "r1"], ["r2", "r3"], ["r2"], ["r3"]]
    assert (running.stats.bisections, running.stats.failed_batches, running.stats.retries) == (2, 2, 0)


def test_without_bisect_an_exception_retries_the_whole_batch(kinesis, stream):
    """A function error fails every record of the batch, as Lambda counts it."""
    put(kinesis, stream, ["a", "b"])
    failed_once = threading.Event()

    def raise_once(records):
        if not failed_once.is_set():
            failed_once.set()
            raise RuntimeError("boom")

    handler = RecordingHandler(raise_once)
    with trigger(handler, stream) as running:
        wait_until(lambda: running.stats.records_done == 2)

    assert handler.batches() == [["a", "b"], ["a", "b"]]
    assert (running.stats.failed_batches, running.stats.bisections) == (1, 0)


def test_records_that_keep_failing_go_to_the_on_failure_destination_and_the_shard_moves_on(
    kinesis, stream, dead_letter_url
):
    """After MaximumRetryAttempts the batch's metadata is dead-lettered, shaped as Lambda sends it."""
    sequence_numbers = put(kinesis, stream, ["poison-1", "poison-2"])

    def fail_poison(records):
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["kinesis"]["sequenceNumber"]} for r in records if body_of(r).startswith("poison")
            ]
        }

    handler = RecordingHandler(fail_poison)
    sqs = boto3.client("sqs")
    dead_letters: list[dict] = []
    with trigger(handler, stream, maximum_retry_attempts=2, on_failure_queue_url=dead_letter_url) as running:
        wait_until(lambda: dead_letters.extend(receive_and_delete(sqs, dead_letter_url)) or dead_letters)
        later = put(kinesis, stream, ["healthy"])
        wait_until(lambda: running.stats.records_done == 1)

    assert handler.batches() == [["poison-1", "poison-2"]] * 3 + [["healthy"]]
    ((message,),) = [dead_letters]
    record = json.loads(message["Body"])
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"].endswith(f":function:{FUNCTION.function_name}")
    info = record["KinesisBatchInfo"]
    assert (info["shardId"], info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        "shardId-000000000000",
        sequence_numbers[0],
        sequence_numbers[1],
        2,
    )
    assert info["streamArn"].endswith(f":stream/{stream}")
    assert running.stats.records_to_failure_destination == 2
    assert running.backlog() == 0 and int(later[0]) > int(sequence_numbers[1])


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"sequenceNumber": "1"}]},
        {"batchItemFailures": [{"itemIdentifier": "999999"}]},
    ],
    ids=["empty-id", "null-id", "wrong-key", "unknown-sequence-number"],
)
def test_a_malformed_response_fails_the_whole_batch(kinesis, stream, response):
    """Lambda treats an item failure it cannot read as a failure of every record."""
    put(kinesis, stream, ["a", "b"])
    answered = threading.Event()

    def malformed_once(records):
        if answered.is_set():
            return None
        answered.set()
        return response

    handler = RecordingHandler(malformed_once)
    with trigger(handler, stream) as running:
        wait_until(lambda: running.stats.records_done == 2)

    assert handler.batches() == [["a", "b"], ["a", "b"]]
    assert running.stats.failed_batches == 1


def test_an_invocation_past_the_function_timeout_is_retried_whatever_it_returned(kinesis, stream):
    """Lambda stops an invocation at its timeout, so its answer never counts."""
    short_function = FunctionConfiguration(function_name="slow", timeout_seconds=1, memory_size_mb=128)
    put(kinesis, stream, ["slow"])
    overran = threading.Event()

    def overrun_once(records):
        if not overran.is_set():
            overran.set()
            time.sleep(1.1)

    handler = RecordingHandler(overrun_once)
    with trigger(handler, stream, function=short_function) as running:
        wait_until(lambda: running.stats.records_done == 1)

    assert handler.batches() == [["slow"], ["slow"]]
    assert running.stats.timeouts == 1


def test_an_invocation_past_the_function_timeout_ends_there_and_the_whole_batch_is_retried(kinesis, stream):
    """Lambda ends an invocation at the function timeout: a function error, so the whole batch is
    retried, while the first invocation would still be running; the handler is stopped before
    its late side effects."""
    short_function = FunctionConfiguration(function_name="hangs", timeout_seconds=0.5, memory_size_mb=128)
    put(kinesis, stream, ["a", "b"])
    first = threading.Event()
    released = threading.Event()
    late_side_effects: list[str] = []
    stopped_by: list[BaseException] = []

    def hang_the_first_time(records):
        if first.is_set():
            return None
        first.set()
        try:
            # Busy in Python, as a handler going through its batch is, until the test lets go.
            while not released.wait(0.01):
                pass
            late_side_effects.append("published after the function timeout")
            return None
        except BaseException as error:
            stopped_by.append(error)
            raise

    handler = RecordingHandler(hang_the_first_time)
    with trigger(handler, stream, function=short_function) as running:
        # Let go before stop(), which waits for the pollers: a trigger that waits for the handler
        # would otherwise never stop.
        try:
            wait_until(lambda: running.stats.timeouts == 1)
            wait_until(lambda: running.stats.records_done == 2)
            wait_until(lambda: stopped_by)
        finally:
            released.set()

    assert handler.batches() == [["a", "b"], ["a", "b"]]
    assert running.stats.failed_batches == 1
    assert [type(error).__name__ for error in stopped_by] == ["FunctionTimedOut"]
    assert not late_side_effects


def test_batches_keep_the_shards_order_and_never_exceed_the_batch_size(kinesis, stream):
    """Every record arrives once, in the order it was put, in batches of at most `batch_size`."""
    bodies = [f"r{n:02d}" for n in range(25)]
    put(kinesis, stream, bodies)
    handler = RecordingHandler()
    with trigger(handler, stream, batch_size=4) as running:
        wait_until(lambda: running.stats.records_done == 25)

    assert [body for batch in handler.batches() for body in batch] == bodies
    assert max(len(batch) for batch in handler.batches()) <= 4


def test_a_batching_window_gathers_records_put_after_the_first(kinesis, stream):
    """With a window, the trigger keeps reading until the batch is full or the window closes."""
    handler = RecordingHandler()
    with trigger(handler, stream, batch_size=3, batching_window_seconds=30) as running:
        put(kinesis, stream, ["a"])
        put(kinesis, stream, ["b", "c"])
        wait_until(lambda: running.stats.records_done == 3)

    assert handler.batches() == [["a", "b", "c"]]


def test_every_shard_is_read_and_each_keeps_its_order(kinesis):
    """One poller per shard: records of one key stay in order, whichever shard holds them."""
    name = f"features-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
    keys = [f"user-{n}" for n in range(8)]
    for round_number in range(3):
        for key in keys:
            put(kinesis, name, [f"{key}/{round_number}"], key=key)
    handler = RecordingHandler()
    with trigger(handler, name) as running:
        wait_until(lambda: running.stats.records_done == 24)

    shards = {record["eventID"].split(":")[0] for event in handler.events for record in event["Records"]}
    assert len(running.shard_ids) == 2 and shards <= set(running.shard_ids)
    delivered = [body for batch in handler.batches() for body in batch]
    for key in keys:
        assert [body for body in delivered if body.startswith(f"{key}/")] == [f"{key}/{n}" for n in range(3)]


def test_the_event_and_context_have_lambdas_shape(kinesis, stream):
    """The handler must see exactly what Lambda gives it, or local runs prove nothing."""
    body = '{"any": "body", "the trigger": ["does not read it"]}'
    [sequence_number] = put(kinesis, stream, [body], key="key-42")
    handler = RecordingHandler()
    with trigger(handler, stream) as running:
        wait_until(lambda: running.stats.records_done == 1)

    [event], [context] = handler.events, handler.contexts
    [record] = event["Records"]
    assert set(event) == {"Records"}
    assert set(record) == {
        "kinesis", "eventSource", "eventVersion", "eventID", "eventName", "invokeIdentityArn", "awsRegion",
        "eventSourceARN",
    }  # fmt: skip
    assert set(record["kinesis"]) == {
        "kinesisSchemaVersion", "partitionKey", "sequenceNumber", "data", "approximateArrivalTimestamp"
    }  # fmt: skip
    assert record["eventID"] == f"shardId-000000000000:{sequence_number}"
    assert (record["eventSource"], record["eventName"], record["eventVersion"]) == (
        "aws:kinesis",
        "aws:kinesis:record",
        "1.0",
    )
    assert record["kinesis"]["partitionKey"] == "key-42"
    assert record["kinesis"]["sequenceNumber"] == sequence_number
    assert base64.b64decode(record["kinesis"]["data"]).decode() == body
    assert isinstance(record["kinesis"]["approximateArrivalTimestamp"], float)
    assert record["eventSourceARN"].endswith(f":stream/{stream}")
    assert record["awsRegion"] == record["eventSourceARN"].split(":")[3]
    assert context.function_name == FUNCTION.function_name
    assert 0 < context.get_remaining_time_in_millis() <= FUNCTION.timeout_seconds * 1000


def test_records_given_up_on_are_not_reported_done(kinesis, stream):
    """The local ledger counts a done record as handled: one sent to the on-failure destination is not."""
    put(kinesis, stream, ["poison", "healthy"])
    done: list[str] = []

    def fail_poison(records):
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["kinesis"]["sequenceNumber"]} for r in records if body_of(r) == "poison"
            ]
        }

    handler = RecordingHandler(fail_poison)
    with trigger(handler, stream, maximum_retry_attempts=0, records_done=done.extend) as running:
        wait_until(lambda: running.stats.batches_to_failure_destination == 1)

    # Without a destination the records are only counted; the poison record takes its later
    # neighbour along, as Lambda retries from the checkpoint.
    assert done == []
    assert running.stats.records_to_failure_destination == 2


def test_stop_waits_for_every_poller(kinesis, stream):
    """stop() returns only when no poller thread is left running."""
    running = trigger(RecordingHandler(), stream).start()
    running.stop()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("kinesis-poller")]
