# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The local SQS trigger behaves like Lambda's event source mapping, which the fault tests rely on."""

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import boto3
import pytest

from template_tools import lambda_trigger
from template_tools.emulator import (
    Redelivery,
    ensure_dead_letter_queue,
    ensure_queue,
    local_aws_environment,
    queue_arn,
    receive_and_delete,
)
from template_tools.lambda_trigger import (
    FunctionConfiguration,
    InvalidBatchResponse,
    SqsTrigger,
    batch_item_failures,
)

# Every test here waits on the emulator's queue timeouts.
pytestmark = pytest.mark.slow

# Short enough that redelivery tests wait about a second, long enough that a batch is never
# redelivered while the handler is still working on it.
VISIBILITY_TIMEOUT_SECONDS = 1
MAX_RECEIVE_COUNT = 2
WAIT_SECONDS = 30
FUNCTION = FunctionConfiguration(function_name="test-dev-handle_feature_events", timeout_seconds=10, memory_size_mb=512)


@pytest.fixture
def sqs(emulator):
    return boto3.client("sqs")


@dataclass(frozen=True)
class Queues:
    features_url: str
    features_arn: str
    dead_letter_url: str


@pytest.fixture
def queues(sqs) -> Queues:
    """A fresh features queue with a 1 s visibility timeout and redrive after two receives."""
    suffix = uuid.uuid4().hex[:8]
    dead_letter_url = ensure_dead_letter_queue(sqs, f"dead-letters-{suffix}")
    redrive = {"deadLetterTargetArn": queue_arn(sqs, dead_letter_url), "maxReceiveCount": MAX_RECEIVE_COUNT}
    features_url = ensure_queue(
        sqs,
        f"features-{suffix}",
        VisibilityTimeout=str(VISIBILITY_TIMEOUT_SECONDS),
        RedrivePolicy=json.dumps(redrive),
    )
    return Queues(features_url, queue_arn(sqs, features_url), dead_letter_url)


class RecordingHandler:
    """A handler that records every delivery and answers with whatever `respond` decides."""

    def __init__(self, respond: Callable[[dict, list[dict]], object] = lambda event, records: None) -> None:
        self.respond = respond
        self.events: list[dict] = []
        self.contexts: list[object] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict, context: object) -> object:
        with self._lock:
            self.events.append(event)
            self.contexts.append(context)
        return self.respond(event, event["Records"])

    def deliveries(self, body: str) -> list[str]:
        """ApproximateReceiveCount of each delivery of `body`, in order."""
        with self._lock:
            return [
                record["attributes"]["ApproximateReceiveCount"]
                for event in self.events
                for record in event["Records"]
                if record["body"] == body
            ]


def send(sqs, queue_url: str, bodies: list[str]) -> None:
    for start in range(0, len(bodies), 10):
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])]
        assert not sqs.send_message_batch(QueueUrl=queue_url, Entries=entries).get("Failed")


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll until the condition holds; the generous limit only stops a broken test hanging."""
    give_up = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < give_up, "condition not reached"
        time.sleep(0.05)


def trigger(handler, queues: Queues, **options) -> SqsTrigger:
    options.setdefault("maximum_concurrency", 1)
    options.setdefault("function", FUNCTION)
    return SqsTrigger(handler, queue_url=queues.features_url, **options)


def first_delivery(record: dict) -> bool:
    return record["attributes"]["ApproximateReceiveCount"] == "1"


def test_a_partial_failure_deletes_only_the_successes_and_the_failures_come_back(sqs, queues):
    """Records named in batchItemFailures stay in the queue and return after the visibility timeout."""
    bodies = ["ok-1", "fail-1", "ok-2", "fail-2", "ok-3"]

    def fail_named_records_once(event, records):
        failures = [r for r in records if r["body"].startswith("fail") and first_delivery(r)]
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in failures]}

    handler = RecordingHandler(fail_named_records_once)
    send(sqs, queues.features_url, bodies)
    with trigger(handler, queues) as running:
        wait_until(lambda: running.stats.records_deleted == len(bodies))

    for body in bodies:
        assert handler.deliveries(body) == (["1", "2"] if body.startswith("fail") else ["1"])
    assert running.stats.records_reported_failed == 2
    assert running.stats.failed_batches == 0


def test_an_exception_redelivers_the_whole_batch(sqs, queues, caplog):
    """A raised exception deletes nothing, and is logged rather than swallowed."""
    bodies = ["a", "b", "c"]

    def raise_on_first_delivery(event, records):
        if first_delivery(records[0]):
            raise RuntimeError("endpoint unreachable")

    handler = RecordingHandler(raise_on_first_delivery)
    send(sqs, queues.features_url, bodies)
    with trigger(handler, queues) as running:
        wait_until(lambda: running.stats.records_deleted == len(bodies))

    assert [handler.deliveries(body) for body in bodies] == [["1", "2"]] * 3
    assert running.stats.failed_batches == 1
    assert "endpoint unreachable" in caplog.text


def test_an_unknown_item_identifier_fails_the_whole_batch(sqs, queues):
    """Lambda cannot tell which record an unknown id means, so it keeps the whole batch."""
    bodies = ["a", "b"]

    def name_a_stranger_once(event, records):
        if first_delivery(records[0]):
            return {"batchItemFailures": [{"itemIdentifier": "not-a-message-of-this-batch"}]}
        return {"batchItemFailures": []}

    handler = RecordingHandler(name_a_stranger_once)
    send(sqs, queues.features_url, bodies)
    with trigger(handler, queues) as running:
        wait_until(lambda: running.stats.records_deleted == len(bodies))

    assert [handler.deliveries(body) for body in bodies] == [["1", "2"]] * 2
    assert running.stats.failed_batches == 1


@pytest.mark.parametrize(
    "response",
    [None, {}, {"batchItemFailures": None}, {"batchItemFailures": []}, {"statusCode": 200}],
    ids=["none", "empty-object", "null-list", "empty-list", "no-failure-key"],
)
def test_an_empty_response_means_every_record_succeeded(response):
    """Lambda's documented full-success responses delete the whole batch."""
    assert batch_item_failures(response, ["m1", "m2"]) == set()


@pytest.mark.parametrize(
    "response",
    [
        {"batchItemFailures": [{"itemIdentifier": ""}]},
        {"batchItemFailures": [{"itemIdentifier": None}]},
        {"batchItemFailures": [{"messageId": "m1"}]},
        {"batchItemFailures": [{"itemIdentifier": "m3"}]},
        {"batchItemFailures": {"itemIdentifier": "m1"}},
        {"batchItemFailures": ["m1"]},
        {"batchItemFailures": {"m1"}},
        "ok",
    ],
    ids=["empty-id", "null-id", "wrong-key", "unknown-id", "not-a-list", "bare-id", "a-set", "a-string"],
)
def test_a_malformed_response_fails_the_whole_batch(response):
    """Anything Lambda cannot read as a partial batch response keeps every record."""
    with pytest.raises(InvalidBatchResponse):
        batch_item_failures(response, ["m1", "m2"])


def test_named_failures_are_the_records_to_keep():
    """Only the named ids are kept; duplicates in the list are harmless."""
    response = {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m2"}]}
    assert batch_item_failures(response, ["m1", "m2", "m3"]) == {"m2"}


def test_redrive_moves_a_record_that_keeps_failing_to_the_dead_letter_queue(sqs, queues):
    """After maxReceiveCount failed deliveries the queue itself moves the record, id unchanged."""
    sent_id = sqs.send_message(QueueUrl=queues.features_url, MessageBody="poison")["MessageId"]

    def always_raise(event, records):
        raise ValueError("cannot process poison")

    handler = RecordingHandler(always_raise)
    dead_letters: list[dict] = []

    def dead_lettered() -> bool:
        dead_letters.extend(sqs.receive_message(QueueUrl=queues.dead_letter_url).get("Messages", []))
        return bool(dead_letters)

    with trigger(handler, queues):
        wait_until(dead_lettered)

    assert handler.deliveries("poison") == [str(count) for count in range(1, MAX_RECEIVE_COUNT + 1)]
    assert [(m["MessageId"], m["Body"]) for m in dead_letters] == [(sent_id, "poison")]


def test_no_invocation_carries_more_records_than_the_batch_size(sqs, queues):
    """The batch size caps every event, whatever the queue holds."""
    handler = RecordingHandler()
    send(sqs, queues.features_url, [f"m-{n}" for n in range(25)])
    with trigger(handler, queues, batch_size=4) as running:
        wait_until(lambda: running.stats.records_deleted == 25)

    assert max(len(event["Records"]) for event in handler.events) <= 4


def test_without_a_batching_window_an_invocation_gets_what_one_receive_returned(sqs, queues):
    """Window 0: no waiting to fill a batch, so a batch never exceeds one ReceiveMessage (10)."""
    handler = RecordingHandler()
    send(sqs, queues.features_url, [f"m-{n}" for n in range(25)])
    with trigger(handler, queues, batch_size=25) as running:
        wait_until(lambda: running.stats.records_deleted == 25)

    assert max(len(event["Records"]) for event in handler.events) <= 10


def test_a_batching_window_gathers_several_receives_into_one_invocation(sqs, queues):
    """With a window, the trigger keeps receiving until the batch is full or the window closes."""
    # Records received early in the window must stay invisible until the invocation ends.
    sqs.set_queue_attributes(QueueUrl=queues.features_url, Attributes={"VisibilityTimeout": "30"})
    handler = RecordingHandler()
    send(sqs, queues.features_url, [f"m-{n}" for n in range(25)])
    with trigger(handler, queues, batch_size=100, batching_window_seconds=1) as running:
        wait_until(lambda: running.stats.records_deleted == 25)

    assert [len(event["Records"]) for event in handler.events] == [25]


def test_an_invocation_past_the_function_timeout_deletes_nothing(sqs, queues):
    """Lambda stops an invocation at its timeout and keeps the batch, whatever the handler returned."""
    short_function = FunctionConfiguration(function_name="slow", timeout_seconds=1, memory_size_mb=128)

    def overrun_once(event, records):
        if first_delivery(records[0]):
            time.sleep(1.1)

    handler = RecordingHandler(overrun_once)
    send(sqs, queues.features_url, ["slow"])
    with trigger(handler, queues, function=short_function) as running:
        wait_until(lambda: running.stats.records_deleted == 1)

    assert handler.deliveries("slow") == ["1", "2"]
    assert running.stats.timeouts == 1


class HangingHandler:
    """A handler that works (in Python, as a handler going through its batch does) until the test
    lets it go, on its first invocation only; every later invocation succeeds at once.

    It notes what a handler would still do after the hang (publish, then answer success, which
    would delete the batch), and the exception that stopped it, if one did.
    """

    def __init__(self) -> None:
        self.released = threading.Event()
        self.late_side_effects: list[str] = []
        self.stopped_by: list[BaseException] = []
        self._first = threading.Event()

    def __call__(self, event: dict, records: list[dict]) -> object:
        if self._first.is_set():
            return None
        self._first.set()
        try:
            while not self.released.wait(0.01):
                pass
            self.late_side_effects.append("published after the function timeout")
            return None
        except BaseException as error:
            self.stopped_by.append(error)
            raise


def test_an_invocation_past_the_function_timeout_ends_there_and_its_whole_batch_comes_back(sqs, queues):
    """Lambda ends an invocation at the function timeout: every record of the batch comes back after
    the visibility timeout with its receive count grown, nothing is deleted whatever the handler
    does later, and the handler is stopped before its late side effects."""
    short_function = FunctionConfiguration(function_name="hangs", timeout_seconds=0.5, memory_size_mb=128)
    bodies = ["a", "b", "c"]
    hanging = HangingHandler()
    handler = RecordingHandler(hanging)
    send(sqs, queues.features_url, bodies)
    with trigger(handler, queues, function=short_function, batch_size=len(bodies)) as running:
        # Let go before stop(), which waits for the pollers: a trigger that waits for the handler
        # would otherwise never stop.
        try:
            # While the first invocation would still hang: the trigger gave up on it at the timeout.
            wait_until(lambda: running.stats.timeouts == 1)
            wait_until(lambda: running.stats.records_deleted == len(bodies))
            wait_until(lambda: bool(hanging.stopped_by))
        finally:
            hanging.released.set()

    assert [handler.deliveries(body) for body in bodies] == [["1", "2"]] * len(bodies)
    assert running.stats.failed_batches == 1
    assert running.stats.records_reported_failed == 0
    assert [type(error).__name__ for error in hanging.stopped_by] == ["FunctionTimedOut"]
    assert not hanging.late_side_effects


class SlowImportHandler(RecordingHandler):
    """A handler whose first invocation is a cold start: its module's import takes `import_seconds`,
    in the context's Init phase, before the handler records the delivery."""

    def __init__(self, import_seconds: float) -> None:
        super().__init__()
        self._import_seconds = import_seconds
        self._imported = threading.Event()

    def __call__(self, event: dict, context) -> object:
        if not self._imported.is_set():
            self._imported.set()
            with context.init_phase():
                # Importing: nothing to wait for but the time it takes.
                threading.Event().wait(self._import_seconds)
        return super().__call__(event, context)


def test_a_cold_starts_init_phase_is_not_counted_in_the_function_timeout(sqs, queues):
    """Lambda runs the Init phase (the handler module's import) under a limit of its own: an
    import longer than the function timeout still leaves the invocation its whole timeout."""
    short_function = FunctionConfiguration(function_name="slow-import", timeout_seconds=1, memory_size_mb=128)
    handler = SlowImportHandler(import_seconds=1.5)
    send(sqs, queues.features_url, ["first"])
    with trigger(handler, queues, function=short_function) as running:
        wait_until(lambda: running.stats.records_deleted == 1)

    assert handler.deliveries("first") == ["1"]
    assert running.stats.timeouts == 0


def test_an_init_phase_past_lambdas_limit_runs_on_under_the_function_timeout(sqs, queues, monkeypatch):
    """What Init takes beyond Lambda's limit counts against the invocation, which times out."""
    monkeypatch.setattr(lambda_trigger, "INIT_PHASE_LIMIT_SECONDS", 0.5)
    short_function = FunctionConfiguration(function_name="slower-import", timeout_seconds=1, memory_size_mb=128)
    # 0.5 s of Init is free and 1 s of timeout follows: an import of 2.5 s ends after both.
    handler = SlowImportHandler(import_seconds=2.5)
    send(sqs, queues.features_url, ["first"])
    with trigger(handler, queues, function=short_function) as running:
        wait_until(lambda: running.stats.records_deleted == 1)

    assert running.stats.timeouts == 1
    # The timed-out invocation was stopped in its import; the next delivery got to the handler's work.
    assert handler.deliveries("first") == ["2"]


@pytest.fixture
def slow_queues(sqs) -> Queues:
    """Like `queues`, but the queue itself keeps a record invisible for a minute: longer than any wait here."""
    suffix = uuid.uuid4().hex[:8]
    dead_letter_url = ensure_dead_letter_queue(sqs, f"dead-letters-{suffix}")
    redrive = {"deadLetterTargetArn": queue_arn(sqs, dead_letter_url), "maxReceiveCount": MAX_RECEIVE_COUNT}
    features_url = ensure_queue(sqs, f"features-{suffix}", VisibilityTimeout="60", RedrivePolicy=json.dumps(redrive))
    return Queues(features_url, queue_arn(sqs, features_url), dead_letter_url)


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo-settings"])
def test_a_failed_record_comes_back_when_the_triggers_scaled_timeout_ends_not_the_queues(sqs, slow_queues, fifo):
    """Scaled time: the trigger ends a failed record's timeout itself, long before the queue would."""

    def fail_one_record_once(event, records):
        failed = [r for r in records if r["body"] == "fails-once" and first_delivery(r)]
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in failed]}

    handler = RecordingHandler(fail_one_record_once)
    send(sqs, slow_queues.features_url, ["fails-once", "fine"])
    # WAIT_SECONDS (30) is shorter than the queue's 60 s: only the trigger can bring the record back in time.
    with trigger(handler, slow_queues, visibility_timeout_seconds=0.25, batch_size=2, fifo=fifo) as running:
        wait_until(lambda: running.stats.records_deleted == 2)

    assert handler.deliveries("fails-once") == ["1", "2"]
    assert handler.deliveries("fine") == ["1"]


def test_redrive_follows_the_scaled_timeout_too(sqs, slow_queues):
    """A record that keeps failing reaches the dead-letter queue after maxReceiveCount scaled timeouts."""
    handler = RecordingHandler(
        lambda event, records: {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}
    )
    send(sqs, slow_queues.features_url, ["always-fails"])
    moved = []
    with trigger(handler, slow_queues, visibility_timeout_seconds=0.25):
        wait_until(lambda: bool(moved.extend(receive_and_delete(sqs, slow_queues.dead_letter_url)) or moved))

    assert [message["Body"] for message in moved] == ["always-fails"]
    assert handler.deliveries("always-fails") == ["1", "2"]


def test_a_scaled_timeout_longer_than_the_queues_is_refused(sqs, slow_queues):
    """The queue would bring the record back first, so such a trigger would not keep its word."""
    with pytest.raises(ValueError, match="queue's own"):
        trigger(RecordingHandler(), slow_queues, visibility_timeout_seconds=61)


@pytest.mark.parametrize(("scaled", "on_the_queue"), [(0.25, 2), (1.5, 3), (3, 3), (180, 180)])
def test_the_queue_gets_whole_seconds_longer_than_a_fractional_timeout(scaled, on_the_queue):
    """SQS takes whole seconds; the queue's timeout must outlast the trigger's, so the trigger ends it."""
    assert Redelivery(visibility_timeout_seconds=scaled).queue_visibility_timeout_seconds == on_the_queue


def test_the_event_and_context_have_lambdas_shape(sqs, queues):
    """The handler must see exactly what Lambda gives it, or local runs prove nothing."""
    handler = RecordingHandler()
    body = '{"any": "body", "the trigger": ["does not read it"]}'
    sqs.send_message(
        QueueUrl=queues.features_url,
        MessageBody=body,
        MessageAttributes={"source": {"DataType": "String", "StringValue": "web"}},
    )
    with trigger(handler, queues) as running:
        wait_until(lambda: running.stats.records_deleted == 1)

    [event], [context] = handler.events, handler.contexts
    [record] = event["Records"]
    assert set(event) == {"Records"}
    assert set(record) == {
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfMessageAttributes",
        "md5OfBody", "eventSource", "eventSourceARN", "awsRegion",
    }  # fmt: skip
    assert record["body"] == body
    assert record["md5OfBody"] == hashlib.md5(body.encode()).hexdigest()
    assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )
    assert record["messageAttributes"] == {
        "source": {"stringValue": "web", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    }
    assert (record["eventSource"], record["eventSourceARN"]) == ("aws:sqs", queues.features_arn)
    assert record["awsRegion"] == queues.features_arn.split(":")[3]

    assert context.function_name == FUNCTION.function_name
    assert context.invoked_function_arn.endswith(f":function:{FUNCTION.function_name}")
    assert context.memory_limit_in_mb == "512"
    assert context.log_group_name == f"/aws/lambda/{FUNCTION.function_name}"
    assert context.aws_request_id
    assert 0 < context.get_remaining_time_in_millis() <= FUNCTION.timeout_seconds * 1000


def test_only_the_records_the_trigger_deleted_are_reported_done(sqs, queues):
    """The local ledger takes a done record without an outcome for a superseded write: failures must not count."""
    done: list[str] = []
    released = threading.Event()

    def fail_until_released(event, records):
        failures = [r for r in records if r["body"] == "fail" and not released.is_set()]
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in failures]}

    handler = RecordingHandler(fail_until_released)
    send(sqs, queues.features_url, ["ok", "fail"])
    with trigger(handler, queues, records_done=done.extend) as running:
        wait_until(lambda: done and running.stats.records_reported_failed)
        ids = {record["body"]: record["messageId"] for event in handler.events for record in event["Records"]}
        assert done == [ids["ok"]]
        assert running.backlog() == 1
        released.set()
        wait_until(lambda: running.stats.records_deleted == 2)

    assert done == [ids["ok"], ids["fail"]]
    assert running.backlog() == 0


def test_a_fifo_group_is_handled_in_order_when_its_failed_records_come_back(sqs):
    """Failed records of a group end their timeouts together; moto, left to end them during a long
    poll, handed out the group's later records first. The trigger must keep SQS's order."""
    url = ensure_queue(
        sqs,
        f"features-{uuid.uuid4().hex[:8]}.fifo",
        FifoQueue="true",
        ContentBasedDeduplication="true",
        VisibilityTimeout="2",
    )
    for n in range(6):
        sqs.send_message(QueueUrl=url, MessageBody=str(n), MessageGroupId="group-a")
    handled: list[str] = []

    def fail_all_but_the_first_on_first_delivery(event, records):
        # Fails records the way the handler does on a FIFO source: one fails, the rest are held back.
        failed = [r for r in records[1:] if first_delivery(r)]
        handled.extend(r["body"] for r in records if r not in failed)
        return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in failed]}

    handler = RecordingHandler(fail_all_but_the_first_on_first_delivery)
    with SqsTrigger(
        handler, queue_url=url, function=FUNCTION, batch_size=3, maximum_concurrency=2, fifo=True
    ) as running:
        wait_until(lambda: running.stats.records_deleted == 6)

    assert handled == ["0", "1", "2", "3", "4", "5"]
    assert len(handler.events) > 2, "records failed and came back"


def test_stop_waits_for_every_poller():
    """stop() returns only when no poller thread is left running."""
    with local_aws_environment():
        sqs = boto3.client("sqs")
        url = sqs.create_queue(QueueName=f"stop-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        running = SqsTrigger(RecordingHandler(), queue_url=url, function=FUNCTION, maximum_concurrency=3).start()
        running.stop()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("sqs-poller")]
