# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""What AWS does and moto does not: a missing endpoint, {% if cookiecutter.input_source == "kinesis" %}on-failure pointers outliving their records{% else %}a record's last delivery{% endif %}.

A missing endpoint answers InvokeEndpoint with ValidationError "Endpoint <name> of account <id>
not found." (HTTP 400, x-amzn-ErrorType: ValidationError; the InvokeEndpoint API reference lists
ValidationError, and aws/amazon-sagemaker-examples#559 shows the message for a deleted endpoint).
moto's sagemaker-runtime never fails, so a small HTTP server on 127.0.0.1 answers in AWS's shape
and the handler's own boto3 client parses it.
{%- if cookiecutter.input_source == "kinesis" %}

A Kinesis trigger's on-failure message names a shard and a sequence range, not the records
(Lambda's "Retain discarded batch records for a Kinesis Data Streams event source": SQS and SNS
destinations get metadata only), so a pointer is only worth keeping while the stream still holds
its records.
{%- else %}

On a record's last delivery (ApproximateReceiveCount reaches MAX_RECEIVE_COUNT, the queue's
maxReceiveCount) the handler dead-letters a record it would retry, with its reason, rather than
hand it back for SQS's redrive to move without one.
{%- endif %}
"""

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
{%- if cookiecutter.input_source == "kinesis" %}
from datetime import UTC, datetime, timedelta
{%- endif %}
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from botocore.exceptions import ClientError
from chalice.test import Client
from moto import mock_aws

from chalicelib.template_runtime.failures import classify_endpoint_error
from chalicelib.template_runtime.telemetry import ENDPOINT_NOT_FOUND_METRIC
from template_tools.deploy.alarms import alarm_resources
from template_tools.deploy.configuration import load_settings
from template_tools.deploy.merge_template import merge_template
{%- if cookiecutter.input_source == "kinesis" %}
from template_tools.deploy.source import EVENT_SOURCE, FEATURES, existing_source_problems
from template_tools.source import DeadLetterEvents
{%- else %}
from template_tools.deploy.source import FEATURES, existing_source_problems
{%- endif %}
{%- if cookiecutter.input_source == "sqs-fifo" %}
from template_tools.destination import refuse_predictions
{%- endif %}
{%- if cookiecutter.input_source != "kinesis" %}
from template_tools.endpoint_server import Fault
{%- endif %}
{%- if cookiecutter.input_source == "sqs-fifo" %}
from template_tools.features_producer import producer_key_field
from template_tools.local_pipeline import EXERCISE_TRIGGER_LIMITS, SampleEvent, run_local_pipeline
{%- endif %}
{%- if cookiecutter.input_source == "kinesis" %}
from template_tools.stage import PROJECT_DIR
{%- else %}
from template_tools.stage import PROJECT_DIR, packaged_environment, patched_environ
{%- endif %}

from .echo_inputs import {% if cookiecutter.input_source == "kinesis" %}broken_json_body, {% endif %}echo_body{% if cookiecutter.input_source == "sqs-fifo" %}, echo_input{% endif %}{% if cookiecutter.input_source != "kinesis" %}, id_marker{% endif %}
from .lambda_events import failure_id, lambda_event{% if cookiecutter.input_source != "kinesis" %}, message_id{% endif %}
{%- if cookiecutter.input_source == "sqs-fifo" %}
from .timing import scaled_timings
{%- endif %}

HANDLER = "handle_feature_events"
ACCOUNT_ID = "123456789012"


def invoke(chalice_app, bodies: list[str], receive_count: int = 1, groups: list[str] | None = None):
    """One batch through the handler; each record on its `receive_count`-th delivery."""
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        event = lambda_event(client, bodies, groups)
        for record in event["Records"]:
            if "attributes" in record:
                record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
        response = client.lambda_.invoke(HANDLER, event).payload
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}, event["Records"]


def attributes(message: dict) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in message.get("MessageAttributes", {}).items()}


def metric_documents(capsys) -> list[dict]:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    return [json.loads(line) for line in lines]


class _MissingEndpoint(BaseHTTPRequestHandler):
    """SageMaker Runtime's answer to InvokeEndpoint on an endpoint the account does not have."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        name = self.path.split("/")[2]
        body = json.dumps({"Message": f"Endpoint {name} of account {ACCOUNT_ID} not found."}).encode()
        self.send_response(400)
        self.send_header("x-amzn-ErrorType", "ValidationError")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def missing_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MissingEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_endpoint_retries_the_whole_batch_dead_letters_nothing_and_is_counted(
    pipeline, chalice_app, stage, monkeypatch, capsys
):
    """A wrong name or an endpoint being re-created is an outage: 10 of 10 records come back, none is dead-lettered."""
    with missing_endpoint() as url:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", url)
        capsys.readouterr()
        failed, records = invoke(chalice_app, [echo_body(n) for n in range(10)])

    assert failed == {failure_id(record) for record in records}
    assert pipeline.dead_letters() == []
    assert pipeline.predictions() == []
    endpoint_name = stage.environment_variables["ENDPOINT_NAME"]
    counted = [
        document
        for document in metric_documents(capsys)
        if ENDPOINT_NOT_FOUND_METRIC in document and document.get("EndpointName") == endpoint_name
    ]
    assert sum(document[ENDPOINT_NOT_FOUND_METRIC] for document in counted) == 10
    (definition,) = counted[0]["_aws"]["CloudWatchMetrics"]
    assert definition["Namespace"] == stage.environment_variables["METRICS_NAMESPACE"]


def validation_error(message: str) -> ClientError:
    return ClientError({"Error": {"Code": "ValidationError", "Message": message}}, "InvokeEndpoint")


def test_only_the_not_found_validation_error_is_an_outage():
    """Any other ValidationError is about the request itself and stays permanent, with AWS's message."""
    missing = classify_endpoint_error(validation_error(f"Endpoint recs-dev of account {ACCOUNT_ID} not found."))
    assert (missing.code, missing.permanent) == ("EndpointNotFound", False)
    assert "recs-dev" in missing.reason

    refused = classify_endpoint_error(validation_error("1 validation error detected: Value at 'body' failed"))
    assert (refused.code, refused.permanent) == ("ValidationError", True)


def test_the_stack_alarms_on_the_missing_endpoint_metric():
    """The handler's EndpointNotFound count, in its own namespace, for the stage's endpoint, sets off an alarm."""
    settings = load_settings("dev")
    alarms = [
        resource["Properties"]
        for resource in alarm_resources(settings).values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"]["MetricName"] == ENDPOINT_NOT_FOUND_METRIC
    ]
    (alarm,) = alarms
    assert alarm["Namespace"] == settings.environment["METRICS_NAMESPACE"]
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": settings.endpoint.name}]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def test_the_endpoint_5xx_alarm_says_a_model_error_is_dead_lettered_at_once():
    """ModelError (the container answered 5xx) is not retried: the alarm must not promise retries."""
    settings = load_settings("dev")
    description = alarm_resources(settings)["EndpointServerErrorsAlarm"]["Properties"]["AlarmDescription"]
    assert "ModelError" in description
    assert "dead-lettered at once" in description
{%- if cookiecutter.input_source == "kinesis" %}


# Kinesis: no delivery count, and on-failure pointers that must not outlive their records.


def test_a_kinesis_dead_letter_claims_no_attempt_count_the_event_does_not_give(pipeline, chalice_app):
    """Lambda's Kinesis records carry no attempt number, so "attempt_count": "1" would be a guess, often wrong."""
    failed, _ = invoke(chalice_app, [broken_json_body(1)])

    assert failed == set()
    (dead,) = pipeline.dead_letters()
    assert attributes(dead)["error_code"] == "InvalidJson"
    assert "attempt_count" not in attributes(dead)


def stream_and_pointer_seconds(settings) -> tuple[int, int]:
    """From the stage's merge template: how long the features stream keeps a record, and how long
    after its arrival an on-failure pointer to it may still be in the dead-letter queue."""
    resources = merge_template(settings)["Resources"]
    stream_seconds = resources[FEATURES]["Properties"]["RetentionPeriodHours"] * 3600
    pointer_seconds = resources["DeadLetterQueue"]["Properties"]["MessageRetentionPeriod"]
    trigger = resources["HandleFeatureEvents"]["Properties"]["Events"][EVENT_SOURCE]["Properties"]
    return stream_seconds, pointer_seconds + trigger["MaximumRecordAgeInSeconds"]


def test_the_stream_keeps_records_as_long_as_the_dead_letter_queue_keeps_pointers_to_them():
    """A pointer can sit in the DLQ for its whole retention after the trigger gave up at the maximum record age."""
    stream_seconds, pointer_seconds = stream_and_pointer_seconds(load_settings("dev"))
    assert stream_seconds >= pointer_seconds


def test_a_longer_dead_letter_retention_lengthens_the_streams_whatever_retention_hours_says():
    """The team may keep dead letters 14 days: the stream follows, rather than strand the pointers after a day."""
    settings = load_settings("dev", {"queues.dead_letter_retention_seconds": 1_209_600, "streams.retention_hours": 24})
    stream_seconds, pointer_seconds = stream_and_pointer_seconds(settings)
    assert stream_seconds >= pointer_seconds


@pytest.fixture
def aws(aws_credentials):
    with mock_aws():
        yield


def test_an_existing_stream_that_drops_records_before_their_pointers_expire_is_refused(aws):
    """The plain `chalice deploy` path uses a stream someone else made: its retention is checked too."""
    settings = load_settings("dev")
    kinesis, sqs = boto3.client("kinesis"), boto3.client("sqs")
    kinesis.create_stream(StreamName=settings.names.features, ShardCount=1)
    sqs.create_queue(
        QueueName=settings.names.dead_letters,
        Attributes={"MessageRetentionPeriod": str(settings.queues.dead_letter_retention_seconds)},
    )

    (problem,) = existing_source_problems(settings)
    assert settings.names.features in problem and "24" in problem

    needed = -(-(settings.queues.dead_letter_retention_seconds + settings.streams.maximum_record_age_seconds) // 3600)
    kinesis.increase_stream_retention_period(StreamName=settings.names.features, RetentionPeriodHours=needed)
    assert existing_source_problems(settings) == []


def on_failure_body(first_arrival: datetime, gave_up: datetime) -> str:
    """What the trigger sends its on-failure destination: metadata about a batch, not its records."""
    return json.dumps(
        {
            "requestContext": {"condition": "RetryAttemptsExhausted", "approximateInvokeCount": 5},
            "timestamp": gave_up.isoformat().replace("+00:00", "Z"),
            "KinesisBatchInfo": {
                "shardId": "shardId-000000000000",
                "startSequenceNumber": "1",
                "endSequenceNumber": "2",
                "approximateArrivalOfFirstRecord": first_arrival.isoformat().replace("+00:00", "Z"),
                "approximateArrivalOfLastRecord": first_arrival.isoformat().replace("+00:00", "Z"),
                "batchSize": 2,
            },
        }
    )


def test_the_redrive_warns_when_a_pointer_or_its_records_expire_within_a_day(aws):
    """`make redrive DRY_RUN=1` must say which pointers to redrive soon, before they become unrecoverable."""
    settings = load_settings("dev")
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=settings.names.features, ShardCount=1)
    kinesis.increase_stream_retention_period(StreamName=settings.names.features, RetentionPeriodHours=168)
    # SQS's default retention: 4 days.
    boto3.client("sqs").create_queue(QueueName=settings.names.dead_letters)
    warnings: list[str] = []
    events = DeadLetterEvents(settings.environment, warn=warnings.append)
    now = datetime.now(UTC)

    events.read("fresh", on_failure_body(now - timedelta(hours=1), now), "", None, lambda body: "")
    assert warnings == []
    # Its records arrived 160 h ago: the stream keeps them 8 h more, the queue the pointer 4 days.
    events.read("old", on_failure_body(now - timedelta(hours=160), now), "", None, lambda body: "")
    (warning,) = warnings
    assert "old" in warning and "shardId-000000000000 1..2" in warning and "about 8 h" in warning
{%- else %}


# The last delivery: a record's reason goes with it to the dead-letter queue.


def processor_for(chalice_app, stage, max_receive_count: str | None) -> None:
    """Build the handler's processor: one record per endpoint call, so a fault hits its record alone.

    The test client sets the stage's own variables on every call, so these are set here, where
    the processor is created; the handler reuses it.
    """
    environment = {"RECORDS_PER_ENDPOINT_CALL": "1", "MAX_RECEIVE_COUNT": max_receive_count}
    with patched_environ({**packaged_environment(stage), **environment}):
        chalice_app.batch_processor()


@pytest.fixture
def last_delivery_is_5(pipeline, chalice_app, stage) -> None:
    """The handler knows the queue's maxReceiveCount: the stack sets MAX_RECEIVE_COUNT from deploy/config.json."""
    processor_for(chalice_app, stage, "5")


def test_a_record_failing_on_its_last_delivery_is_dead_lettered_with_its_reason(
    last_delivery_is_5, pipeline, chalice_app, endpoint
):
    """Returned on its last delivery, SQS's redrive would move it without a reason; the handler moves it with one."""
    endpoint.inject(Fault(error="ModelNotReadyException", match=id_marker(1)))
    failed, records = invoke(chalice_app, [echo_body(n) for n in range(3)], receive_count=5)

    assert failed == set()
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == echo_body(1)
    dead_attributes = attributes(dead)
    assert dead_attributes["error_code"] == "ModelNotReadyException"
    assert dead_attributes["error_reason"].startswith("ModelNotReadyException: ")
    assert dead_attributes["error_reason"].endswith("(delivery 5 of 5)")
    assert dead_attributes["attempt_count"] == "5"
    assert dead_attributes["source_message_id"] == message_id(records[1])
    assert {envelope["message_id"] for envelope in pipeline.predictions()} == {
        message_id(records[0]),
        message_id(records[2]),
    }


def test_a_record_before_its_last_delivery_is_still_retried(last_delivery_is_5, pipeline, chalice_app, endpoint):
    """Delivery 4 of 5: a passing failure gets its next delivery, not the dead-letter queue."""
    endpoint.inject(Fault(error="ModelNotReadyException", match=id_marker(1)))
    failed, records = invoke(chalice_app, [echo_body(n) for n in range(3)], receive_count=4)

    assert failed == {failure_id(records[1])}
    assert pipeline.dead_letters() == []


def test_without_max_receive_count_the_queue_redrive_decides_as_before(pipeline, chalice_app, stage, endpoint):
    """A function without MAX_RECEIVE_COUNT (a plain `chalice deploy` not fixed up) returns the record as before."""
    processor_for(chalice_app, stage, None)
    endpoint.inject(Fault(error="ModelNotReadyException", match=id_marker(1)))
    failed, records = invoke(chalice_app, [echo_body(n) for n in range(3)], receive_count=5)

    assert failed == {failure_id(records[1])}
    assert pipeline.dead_letters() == []


def test_a_prediction_refused_on_its_last_delivery_is_dead_lettered_with_the_refusal(pipeline, chalice_app, stage):
    """A destination that keeps refusing one prediction: on the last delivery the record goes with why."""
    bodies = [echo_body(n) for n in range(3)]
    # Only the envelope names the record's message id; its dead letter (the original body) does not.
    with pipeline.refusing(json.dumps("msg-2")):
        # The refusal hooks into the clients the processor creates, so it is built inside.
        processor_for(chalice_app, stage, "5")
        failed, records = invoke(chalice_app, bodies, receive_count=5)

    assert failed == set()
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == bodies[2]
    assert attributes(dead)["error_reason"].endswith("(delivery 5 of 5)")
    assert {envelope["message_id"] for envelope in pipeline.predictions()} == {
        message_id(records[0]),
        message_id(records[1]),
    }


def test_the_stack_tells_the_function_the_queues_max_receive_count():
    """The handler's last delivery must be the queue's: both come from queues.max_receive_count."""
    resources = merge_template(load_settings("dev"))["Resources"]
    variables = resources["HandleFeatureEvents"]["Properties"]["Environment"]["Variables"]
    redrive = resources[FEATURES]["Properties"]["RedrivePolicy"]
    assert variables["MAX_RECEIVE_COUNT"] == str(redrive["maxReceiveCount"])


def test_a_queue_made_elsewhere_must_redrive_after_the_configured_receives(aws_credentials):
    """The plain `chalice deploy` path uses a queue someone else made: its maxReceiveCount is checked."""
    settings = load_settings("dev")
    with mock_aws():
        sqs = boto3.client("sqs")
        fifo = {"FifoQueue": "true"} if settings.names.features.endswith(".fifo") else {}
        dead_letters = sqs.create_queue(QueueName=settings.names.dead_letters, Attributes=fifo)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dead_letters, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        receives = settings.queues.max_receive_count
        redrive = {"deadLetterTargetArn": arn, "maxReceiveCount": receives + 1}
        sqs.create_queue(QueueName=settings.names.features, Attributes=fifo | {"RedrivePolicy": json.dumps(redrive)})

        (problem,) = existing_source_problems(settings)
        assert settings.names.features in problem and str(receives + 1) in problem

        url = sqs.get_queue_url(QueueName=settings.names.features)["QueueUrl"]
        redrive["maxReceiveCount"] = receives
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": json.dumps(redrive)})
        assert existing_source_problems(settings) == []
{%- if cookiecutter.input_source == "sqs-fifo" %}


# FIFO: a group's backlog never follows its failing record into the dead-letter queue.

GROUPS = ["group-a", "group-a", "group-a", "group-b"]


def test_on_the_last_delivery_the_failing_record_goes_with_its_reason_and_its_group_goes_on_in_order(
    last_delivery_is_5, pipeline, chalice_app, endpoint
):
    """A1 keeps failing: on delivery 5 of 5 it is dead-lettered with why, and A2 and A3 are published, not held back.

    Before, A1, A2 and A3 were all returned, and SQS's redrive moved the whole backlog of the
    group to the dead-letter queue with no reason attached.
    """
    endpoint.inject(Fault(error="ModelNotReadyException", match=id_marker(0)))
    bodies = [echo_body(n, key=GROUPS[n]) for n in range(4)]
    failed, records = invoke(chalice_app, bodies, receive_count=5, groups=GROUPS)

    assert failed == set()
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == bodies[0]
    assert attributes(dead)["error_reason"].endswith("(delivery 5 of 5)")
    assert {envelope["message_id"] for envelope in pipeline.predictions()} == {
        message_id(record) for record in records[1:]
    }


def test_before_the_last_delivery_held_back_records_wait_and_are_never_dead_lettered(
    last_delivery_is_5, pipeline, chalice_app, endpoint
):
    """Delivery 4 of 5: A1 is retried, A2 and A3 wait behind it unpublished; group B goes on."""
    endpoint.inject(Fault(error="ModelNotReadyException", match=id_marker(0)))
    bodies = [echo_body(n, key=GROUPS[n]) for n in range(4)]
    failed, records = invoke(chalice_app, bodies, receive_count=4, groups=GROUPS)

    assert failed == {failure_id(record) for record in records[:3]}
    assert pipeline.dead_letters() == []
    assert {envelope["message_id"] for envelope in pipeline.predictions()} == {message_id(records[3])}


# The whole way round: the local trigger, moto's FIFO queue and its redrive policy.


@pytest.mark.slow
def test_a_groups_backlog_does_not_follow_a_record_that_fails_every_delivery_into_the_dead_letter_queue(
    model_dir, stage
):
    """End to end with redrive after 2 receives, as `make local` runs it: only the failing event is
    dead-lettered, with its reason.

    The destination refuses the first event's prediction every time. Before, every delivery
    returned it and the two held back behind it, and after the second one SQS's redrive moved all
    three to the dead-letter queue, as sent, with no reason.
    """
    timings = scaled_timings(visibility_timeout_seconds=7, max_receive_count=2, function_timeout_seconds=6)
    # One user's three events: the producer sends them in one message group, in order.
    same_user = {producer_key_field(stage.environment_variables): "user-a"}
    events = [SampleEvent(f"event-{n}", echo_input(n) | same_user) for n in range(3)]
    # Local mode tells the handler the queue's maxReceiveCount itself, as the stack does.
    environment = timings.handler_environment()
    # Hooks on the default session reach the clients the handler creates later.
    boto3.setup_default_session()
    # The first event's prediction, never its dead letter (the original body has no "prediction").
    first_prediction = ('"event-0"', '"prediction"')
    refuse_first = refuse_predictions(
        boto3.DEFAULT_SESSION.events, lambda message: all(part in message["body"] for part in first_prediction)
    )
    with patched_environ(environment), refuse_first:
        summary = run_local_pipeline(
            len(events),
            model_dir=model_dir,
            visibility_timeout_seconds=timings.visibility_timeout_seconds,
            stall_timeout_seconds=20,
            progress=None,
            events=events,
            max_receive_count=timings.max_receive_count,
            function_timeout_seconds=timings.function_timeout_seconds,
            settle=True,
            maximum_concurrency=1,
            trigger_limits=EXERCISE_TRIGGER_LIMITS,
        )

    assert summary.lost == 0
    dead_lettered = [(json.loads(m["Body"])["event_id"], "error_code" in attributes(m)) for m in summary.dead_letters]
    assert dead_lettered == [("event-0", True)]
    (dead,) = summary.dead_letters
    assert attributes(dead)["error_reason"].endswith("(delivery 2 of 2)")
    assert sorted(envelope["event_id"] for envelope in summary.predictions) == ["event-1", "event-2"]
{%- endif %}
{%- endif %}
