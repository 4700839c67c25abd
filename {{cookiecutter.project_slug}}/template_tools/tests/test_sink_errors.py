# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Sink errors no retry can cure: caught when a record is read, or told apart from passing ones in
the destination's answer, and dead-lettered with the reason instead of retried forever.

moto takes much that AWS refuses (SQS takes any character, SNS any parameter), so those refusals
are injected into the real clients through botocore's events (template_tools/sink_faults.py), in
the shape AWS answers them: a batch entry failed with SenderFault, or a call failed with a 400.
A DynamoDB key over 2,048 bytes moto refuses itself.
"""

import base64
import json
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from chalice.test import Client
from moto import mock_aws

from chalicelib.template_runtime import source
from chalicelib.template_runtime.batch import (
    BASE64_BODY,
    BODY_ENCODING_ATTRIBUTE,
{%- if cookiecutter.input_source == "kinesis" %}
    EMPTY_BODY,
    EMPTY_BODY_TEXT,
{%- endif %}
    PREDICTION_REFUSED,
    dead_letter,
)
from chalicelib.template_runtime.failures import RecordFailure, batch_entry_failure, classify_sink_error
from chalicelib.template_runtime.feature_events import RejectedRecord
from chalicelib.template_runtime.publishing import OutgoingMessage, QueuePublisher
from chalicelib.template_runtime.telemetry import DEAD_LETTER_REFUSED_METRIC
from template_tools import redrive, replay
from template_tools.deploy.alarms import alarm_resources
from template_tools.deploy.configuration import load_settings
from template_tools.destination import PUBLISH_OPERATION, refuse_predictions
from template_tools.emulator import Redelivery
from template_tools.features_producer import FeaturesProducer
from template_tools.operator_progress import Progress
from template_tools.sink_faults import (
    Refusal,
    enforce_sqs_characters,
    fail_calls,
    permanent_refusal,
    refuse_send_entries,
)
from template_tools.source import create_source
from template_tools.stage import PROJECT_DIR, stage_environment

from .echo_inputs import broken_json_body, echo_body, id_marker
from .lambda_events import failure_id, lambda_event, message_id

HANDLER = "handle_feature_events"
# A body a Kinesis record may carry and SQS may not: "\x01" and "\x07" are outside SQS's characters.
BODY_SQS_REFUSES = '{"id": "rec-0001", "note": "a bell \x07 and \x01"}'


def invoke(chalice_app, bodies: list[str], groups: list[str] | None = None) -> tuple[dict, dict]:
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        event = lambda_event(client, bodies, groups)
        return client.lambda_.invoke(HANDLER, event).payload, event


def attributes_of(dead_letter: dict) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in dead_letter["MessageAttributes"].items()}


def handler_session_events():
    """The event system of the session the handler's clients come from (created on its first call)."""
    boto3.setup_default_session()
    return boto3.DEFAULT_SESSION.events


@contextmanager
def destination_refusing_as_invalid(fragment: str) -> Iterator[str]:
    """Make the destination refuse the predictions holding `fragment` as AWS refuses an invalid one.

    SQS and SNS fail the entry with SenderFault, DynamoDB the call with a 400 ValidationException
    (sink_faults.PERMANENT_REFUSALS). Kinesis reports no such refusal per record: it fails the
    whole PutRecords call with a 400. Yields the error code the refusal carries.
    """
    events = handler_session_events()
    refusal = permanent_refusal(PUBLISH_OPERATION)
    injector: AbstractContextManager[None]
    if refusal is None:
        refusal = Refusal("ValidationException", sender_fault=True)

        def spoils_the_call(params: dict) -> Refusal | None:
            holds = any(fragment in bytes(record["Data"]).decode() for record in params["Records"])
            return refusal if holds else None

        injector = fail_calls(events, PUBLISH_OPERATION, spoils_the_call)
    else:
        # Dead letters go through SendMessageBatch too in an SQS project: only envelopes are refused.
        def refuses(entry: dict[str, str]) -> Refusal | None:
            return refusal if fragment in entry["body"] and '"prediction"' in entry["body"] else None

        injector = refuse_predictions(events, refuses)
    with injector:
        yield refusal.code


def test_a_prediction_the_destination_refuses_as_invalid_is_dead_lettered_with_its_reason_not_retried(
    pipeline, chalice_app
):
    """A refusal for what the message holds comes back on every attempt: retried, it would hold its
    group back until the source gives up, and reach the dead-letter queue without a reason."""
    bodies = [echo_body(n) for n in range(8)]
    with destination_refusing_as_invalid(id_marker(3)) as code:
        response, event = invoke(chalice_app, bodies)
    assert response == {"batchItemFailures": []}
    published = {envelope["message_id"] for envelope in pipeline.predictions()}
    assert published == {message_id(record) for n, record in enumerate(event["Records"]) if n != 3}
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == bodies[3]
    attributes = attributes_of(dead)
    assert attributes["error_code"] == PREDICTION_REFUSED
    assert attributes["source_message_id"] == message_id(event["Records"][3])
    assert code in attributes["error_reason"]


@pytest.mark.skipif(
    PUBLISH_OPERATION != "dynamodb.PutItem",
    reason="only a DynamoDB table refuses a key for its length (a stream hashes a long key to one it takes)",
)
def test_a_key_over_the_tables_2048_bytes_is_dead_lettered_when_read_and_the_records_after_it_are_published(
    pipeline, chalice_app
):
    """DynamoDB answers such a key ValidationException on every attempt; retried, it held back every
    later record of its group. Bytes of UTF-8 count, not characters."""
    long_key = "\u00e9" * 1025
    assert len(long_key) < 2048 < len(long_key.encode())
    bodies = [echo_body(1, key=long_key), echo_body(2), echo_body(3)]
    # One source group: an ordered source would hold the later two back behind a retried first.
    response, event = invoke(chalice_app, bodies, groups=["user-1"] * 3)
    assert response == {"batchItemFailures": []}
    published = {envelope["message_id"] for envelope in pipeline.predictions()}
    assert published == {message_id(record) for record in event["Records"][1:]}
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == bodies[0]
    attributes = attributes_of(dead)
    assert attributes["error_code"] == "InvalidPartitionKey"
    assert "2050 bytes" in attributes["error_reason"] and "2048" in attributes["error_reason"]


def test_a_body_sqs_cannot_carry_is_dead_lettered_base64_and_redrive_restores_its_exact_text(
    pipeline, chalice_app, stage
):
    """SQS refuses a message holding "\\x01" (InvalidMessageContents) every time, and the record was
    retried forever. Kinesis records can hold it; the rule is SQS's (aws_limits.SQS_REFUSED_CHARACTER)."""
    with enforce_sqs_characters(handler_session_events()):
        response, _ = invoke(chalice_app, [echo_body(0), BODY_SQS_REFUSES])
    assert response == {"batchItemFailures": []}
    (dead,) = pipeline.dead_letters()
    attributes = attributes_of(dead)
    assert attributes[BODY_ENCODING_ATTRIBUTE] == BASE64_BODY
    assert attributes["error_code"] == "InvalidJson"
    assert base64.b64decode(dead["Body"]).decode() == BODY_SQS_REFUSES

    environment = stage.environment_variables
    redelivery = Redelivery(max_receive_count=1, visibility_timeout_seconds=0)
    create_source(environment, redelivery)
    _put_back_in_dead_letter_queue(environment, dead)
    report = redrive.redrive(
        redrive.DeadLetterQueue(environment, wait_seconds=0), FeaturesProducer(environment), Progress("r", None, None)
    )
    assert report.moved == 1
    assert bodies_the_handler_reads(environment) == [BODY_SQS_REFUSES]


{%- if cookiecutter.input_source == "kinesis" %}


def test_an_empty_record_is_dead_lettered_as_a_placeholder_and_redrive_puts_it_back_empty(pipeline, chalice_app, stage):
    """A stream record's data may be empty, an SQS message body may not: its dead letter was
    refused every time, and the record retried until the trigger gave up on it."""
    with enforce_sqs_characters(handler_session_events()):
        response, _ = invoke(chalice_app, [echo_body(0), ""])
    assert response == {"batchItemFailures": []}
    (dead,) = pipeline.dead_letters()
    attributes = attributes_of(dead)
    assert (attributes[BODY_ENCODING_ATTRIBUTE], attributes["error_code"]) == (EMPTY_BODY, "InvalidJson")
    assert dead["Body"] == EMPTY_BODY_TEXT

    environment = stage.environment_variables
    create_source(environment, Redelivery(max_receive_count=1, visibility_timeout_seconds=0))
    _put_back_in_dead_letter_queue(environment, dead)
    report = redrive.redrive(
        redrive.DeadLetterQueue(environment, wait_seconds=0), FeaturesProducer(environment), Progress("r", None, None)
    )
    assert report.moved == 1
    assert bodies_the_handler_reads(environment) == [""]
{%- endif %}


def test_an_exported_base64_dead_letter_is_replayed_as_its_exact_text(pipeline, chalice_app, stage, tmp_path):
    """An export keeps the dead letter as the queue holds it, attributes included; replay decodes it."""
    with enforce_sqs_characters(handler_session_events()):
        invoke(chalice_app, [BODY_SQS_REFUSES])
    (dead,) = pipeline.dead_letters()
    environment = stage.environment_variables
    create_source(environment, Redelivery(max_receive_count=1, visibility_timeout_seconds=0))
    _put_back_in_dead_letter_queue(environment, dead)
    export = tmp_path / "dead-letters.jsonl"
    redrive.export(redrive.inspect(redrive.DeadLetterQueue(environment, wait_seconds=0)).messages, export)
    assert json.loads(export.read_text())["attributes"][BODY_ENCODING_ATTRIBUTE] == BASE64_BODY

    with stage_environment(stage):
        assert replay.main([str(export)]) == 0

    assert bodies_the_handler_reads(environment) == [BODY_SQS_REFUSES]


def test_a_dead_letter_the_queue_refuses_for_good_is_retried_never_dropped_and_said_loudly(
    pipeline, chalice_app, caplog, capsys
):
    """The record must not be lost: it goes back to the source, with an error line and a metric."""
    caplog.set_level(logging.INFO)
    bad = broken_json_body(1)
    events = handler_session_events()
    refusal = Refusal("InvalidMessageContents", sender_fault=True)
    with refuse_send_entries(events, lambda entry: refusal if entry["MessageBody"] == bad else None):
        response, event = invoke(chalice_app, [echo_body(0), bad])
    assert response == {"batchItemFailures": [{"itemIdentifier": failure_id(event["Records"][1])}]}
    (line,) = [record for record in caplog.records if record.getMessage() == "dead_letter_refused"]
    assert line.levelno == logging.ERROR
    assert line.fields["permanent"] is True and line.fields["message_id"] == message_id(event["Records"][1])
    metrics = [json.loads(out) for out in capsys.readouterr().out.splitlines() if out.startswith('{"_aws"')]
    (counted,) = [document for document in metrics if DEAD_LETTER_REFUSED_METRIC in document]
    assert counted[DEAD_LETTER_REFUSED_METRIC] == 1
    # The stack's alarm watches that very metric: namespace, name and dimensions.
    alarm = alarm_resources(load_settings("dev"))["DeadLetterRefusedAlarm"]["Properties"]
    (written,) = counted["_aws"]["CloudWatchMetrics"]
    assert alarm["Namespace"] == written["Namespace"]
    assert alarm["MetricName"] in [metric["Name"] for metric in written["Metrics"]]
    assert alarm["Dimensions"] == [{"Name": name, "Value": counted[name]} for (name,) in written["Dimensions"]]
    assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")


def _put_back_in_dead_letter_queue(environment: dict[str, str], dead: dict) -> None:
    """pipeline.dead_letters() took the message off the queue; send it back as it was."""
    sqs = boto3.client("sqs")
    name = environment["DEAD_LETTER_QUEUE_NAME"]
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    fifo = {"MessageGroupId": "g-1", "MessageDeduplicationId": dead["MessageId"]} if name.endswith(".fifo") else {}
    sqs.send_message(QueueUrl=url, MessageBody=dead["Body"], MessageAttributes=dead["MessageAttributes"], **fifo)


def bodies_the_handler_reads(environment: dict[str, str]) -> list[str]:
    """The body of every event on the features queue or stream, as the handler reads it (source.delivery)."""
    if "FEATURES_STREAM_NAME" in environment:
        return [source.delivery(record).body for record in _stream_records(environment["FEATURES_STREAM_NAME"])]
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=environment["FEATURES_QUEUE_NAME"])["QueueUrl"]
    messages = sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"]
    ).get("Messages", [])
    return [source.delivery(_lambda_sqs_record(message)).body for message in messages]


def _lambda_sqs_record(message: dict) -> dict:
    attributes = message.get("MessageAttributes", {})
    return {
        "messageId": message["MessageId"],
        "body": message["Body"],
        "attributes": message["Attributes"],
        "messageAttributes": {
            name: {"stringValue": value["StringValue"], "dataType": value["DataType"]}
            for name, value in attributes.items()
        },
    }


def _stream_records(stream_name: str) -> list[dict]:
    """Every record of the stream, shaped as Lambda hands it over."""
    kinesis = boto3.client("kinesis")
    records = []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for record in kinesis.get_records(ShardIterator=iterator)["Records"]:
            kinesis_part = {
                "data": base64.b64encode(record["Data"]).decode(),
                "partitionKey": record["PartitionKey"],
                "sequenceNumber": record["SequenceNumber"],
                "approximateArrivalTimestamp": record["ApproximateArrivalTimestamp"].timestamp(),
            }
            records.append({"eventID": f"{shard['ShardId']}:{record['SequenceNumber']}", "kinesis": kinesis_part})
    return records


# The pieces, one by one.


def client_error(code: str, status: int = 400) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Op")


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        pytest.param(client_error(code), True, id=code)
        for code in (
            "ValidationException",
            "InvalidArgumentException",
            "InvalidMessageContents",
            "AWS.SimpleQueueService.BatchRequestTooLong",
        )
    ]
    + [pytest.param(ParamValidationError(report="PartitionKey too short"), True, id="ParamValidationError")]
    + [
        pytest.param(client_error(code, status), False, id=code)
        for code, status in (
            ("ThrottlingException", 400),
            ("ProvisionedThroughputExceededException", 400),
            ("ResourceNotFoundException", 400),
            ("AccessDeniedException", 403),
            ("InternalServerError", 500),
        )
    ],
)
def test_a_call_refused_for_what_it_holds_is_permanent_and_one_refused_for_capacity_or_access_is_not(error, permanent):
    """A missing table, a denied permission or throttling is cured by fixing or waiting: those are retried."""
    failure = classify_sink_error("PutItem", error)
    assert failure.permanent is permanent
    assert failure.reason.startswith("PutItem failed: ")


@pytest.mark.parametrize(
    ("code", "sender_fault", "permanent"),
    [
        ("InvalidMessageContents", True, True),
        ("InvalidParameterValue", True, True),
        ("InternalError", False, False),
        # The sender's fault, but a key policy or throttling that changes: retried.
        ("KMSAccessDenied", True, False),
        ("KmsThrottled", True, False),
    ],
)
def test_a_batch_entry_failed_as_the_senders_fault_is_refused_for_good(code, sender_fault, permanent):
    """SendMessageBatch and PublishBatch say whose fault a failed entry is; before, SenderFault was ignored."""
    failure = batch_entry_failure({"Id": "0", "SenderFault": sender_fault, "Code": code, "Message": "m"})
    assert (failure.code, failure.permanent) == (code, permanent)
    assert failure.reason == f"{code}: m"


@pytest.mark.parametrize(
    ("group", "taken"),
    [
        ("user-42", True),
        ("a" * 128, True),
        ("a" * 129, False),
        ("""!"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~""", True),
        ("with space", False),
        ("caf\u00e9", False),
    ],
)
def test_a_fifo_queue_names_a_message_group_it_cannot_take_before_anything_is_sent(group, taken, executor):
    """MessageGroupId is at most 128 letters, digits and punctuation; a standard queue has no groups."""
    fifo = QueuePublisher(sqs_client=None, queue_name="q.fifo", executor=executor, fifo=True)
    standard = QueuePublisher(sqs_client=None, queue_name="q", executor=executor)
    assert (fifo.key_problem(group) == "") is taken
    assert standard.key_problem(group) == ""


def test_a_call_refused_whole_as_invalid_is_pinned_on_the_message_that_spoils_it(aws_credentials, executor):
    """One invalid message must not dead-letter the nine it shared a call with: each is sent alone."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url = sqs.create_queue(QueueName="predictions")["QueueUrl"]
        publisher = QueuePublisher(sqs, "predictions", executor)
        messages = [OutgoingMessage(key=f"k{n}", body=f"body-{n}") for n in range(10)]
        refusal = Refusal("InvalidParameterValue", sender_fault=True)

        def spoiled(params: dict) -> Refusal | None:
            return refusal if any(entry["MessageBody"] == "body-3" for entry in params["Entries"]) else None

        with fail_calls(sqs.meta.events, "sqs.SendMessageBatch", spoiled):
            failed = publisher.send(messages)
        assert list(failed) == ["k3"]
        assert failed["k3"].permanent
        received = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            received += [message["Body"] for message in batch]
            sqs.delete_message_batch(
                QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)]
            )
    assert sorted(received) == sorted(f"body-{n}" for n in range(10) if n != 3)


def test_a_reason_holding_characters_sqs_refuses_is_cleaned_and_the_body_encoded():
    """A model's message may quote the record: an attribute SQS refuses would lose the dead letter."""
    failure = RecordFailure.permanent_failure("ModelError", "saw \x01")
    record = RejectedRecord("m-1", "caf\u00e9 \x01", 1, failure, "m-1")
    message = dead_letter(record, record.failure)
    assert message.attributes["error_reason"] == "saw \ufffd"
    assert message.attributes[BODY_ENCODING_ATTRIBUTE] == BASE64_BODY
    assert base64.b64decode(message.body).decode() == "caf\u00e9 \x01"
    assert redrive.original_body(message.body, message.attributes) == "caf\u00e9 \x01"
    plain = dead_letter(replace(record, body="caf\u00e9 \u2713"), record.failure)
    assert (plain.body, BODY_ENCODING_ATTRIBUTE in plain.attributes) == ("caf\u00e9 \u2713", False)
