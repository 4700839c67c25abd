# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The operator commands: send, replay, redrive and tail, against the stage's resources in moto."""

import json
from datetime import UTC, datetime
from io import StringIO

import boto3
import pytest
from moto import mock_aws

from chalicelib.template_runtime.destination import prediction_sink
from chalicelib.template_runtime.publishing import OutgoingMessage
{%- if cookiecutter.input_source == "kinesis" %}
from chalicelib.template_runtime.redelivery import unwrap
{%- endif %}
from template_tools import redrive, replay, send, tail
from template_tools.destination import PredictionReader, create_destination
from template_tools.emulator import Redelivery
{%- if cookiecutter.input_source == "kinesis" %}
from template_tools.features_producer import FeaturesProducer, OutgoingEvent, event_group
{%- else %}
from template_tools.features_producer import FeaturesProducer, event_group
{%- endif %}
from template_tools.operator_progress import Progress
from template_tools.redrive import DeadLetterQueue, inspect
{%- if cookiecutter.input_source != "kinesis" %}
from template_tools.sink_faults import refuse_send_entries
{%- endif %}
from template_tools.source import TRIGGER_DEAD_LETTER_REASON, create_source
from template_tools.stage import stage_environment
{% if cookiecutter.input_source == "kinesis" %}
# Bodies whose bytes must come back unchanged: spacing, non-ASCII, not JSON at all.
ODD_BODIES = [
    '{"features": {"id": "rec-0001", "value": 1.5}}',
    ' {"features":{"id":"rec-0002","value":2.5}}  ',
    "not json at all: caf\u00e9 \u2713",
]
{%- else %}
# Bodies whose bytes must come back unchanged: spacing, non-ASCII, not JSON at all, a newline.
ODD_BODIES = [
    '{"features": {"id": "rec-0001", "value": 1.5}}',
    ' {"features":{"id":"rec-0002","value":2.5}}  ',
    "not json at all: caf\u00e9 \u2713",
    "two\nlines",
]
{%- endif %}


@pytest.fixture
def environment(aws_credentials, stage):
    """The dev stage's features source, dead-letter queue and destination, in moto."""
    with mock_aws(), stage_environment(stage):
        # One delivery before SQS's redrive moves a record, and no wait for it to come back.
        create_source(stage.environment_variables, Redelivery(max_receive_count=1, visibility_timeout_seconds=0))
        create_destination(stage.environment_variables)
        yield stage.environment_variables


@pytest.fixture
def sqs():
    return boto3.client("sqs")


def dead_letter_url(sqs, environment) -> str:
    return sqs.get_queue_url(QueueName=environment["DEAD_LETTER_QUEUE_NAME"])["QueueUrl"]


def handler_dead_letter(sqs, environment, body: str, error_code: str, group: str = "u-1") -> str:
    """Put a record in the dead-letter queue as the handler does; return its dead-letter message id."""
    attributes = {
        "error_code": error_code,
        "error_reason": f"{error_code} in a test",
        "attempt_count": "1",
        "source_message_id": "features-message-id",
        "failed_at": datetime.now(UTC).isoformat(),
    }
    extra = {}
    if environment["DEAD_LETTER_QUEUE_NAME"].endswith(".fifo"):
        extra = {"MessageGroupId": group, "MessageDeduplicationId": f"{error_code}-{hash(body)}"}
    return sqs.send_message(
        QueueUrl=dead_letter_url(sqs, environment),
        MessageBody=body,
        MessageAttributes={name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()},
        **extra,
    )["MessageId"]


def dead_letter_bodies(sqs, environment) -> list[str]:
    """Every body in the dead-letter queue, left there (a short visibility timeout, then visible again)."""
    url = dead_letter_url(sqs, environment)
    messages = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages"):
        messages += batch
    for message in messages:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return [message["Body"] for message in messages]


def quiet_queue(environment) -> DeadLetterQueue:
    # No long polling: moto answers at once, and an empty answer means empty.
    return DeadLetterQueue(environment, wait_seconds=0)


def run_redrive(environment) -> redrive.RedriveReport:
    return redrive.redrive(quiet_queue(environment), FeaturesProducer(environment), Progress("redriving", None, None))
{%- if cookiecutter.input_source != "kinesis" %}


def features_messages(sqs, environment) -> list[dict]:
    """Every message on the features queue, taken off it."""
    url = sqs.get_queue_url(QueueName=environment["FEATURES_QUEUE_NAME"])["QueueUrl"]
    messages = []
    while batch := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageSystemAttributeNames=["All"]
    ).get("Messages"):
        messages += batch
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)]
        )
    return messages


def features_bodies(sqs, environment) -> list[str]:
    return [message["Body"] for message in features_messages(sqs, environment)]


def queue_moved_dead_letter(sqs, environment, body: str) -> None:
    """Send a record to the features queue and let SQS's redrive policy move it (maxReceiveCount 1)."""
    url = sqs.get_queue_url(QueueName=environment["FEATURES_QUEUE_NAME"])["QueueUrl"]
    extra = {"MessageGroupId": "u-9", "MessageDeduplicationId": "moved"} if url.endswith(".fifo") else {}
    sqs.send_message(QueueUrl=url, MessageBody=body, **extra)
    assert sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)["Messages"]
    # The second receive finds the record past maxReceiveCount: SQS moves it instead.
    assert "Messages" not in sqs.receive_message(QueueUrl=url, VisibilityTimeout=0)


def test_dry_run_counts_by_reason_and_moves_nothing(environment, sqs, tmp_path, capsys):
    """An operator decides on a redrive from the dry run, so it must show why each message failed
    and leave the dead-letter queue exactly as it was."""
    handler_dead_letter(sqs, environment, ODD_BODIES[0], "ModelError")
    handler_dead_letter(sqs, environment, ODD_BODIES[1], "ModelError", group="u-2")
    handler_dead_letter(sqs, environment, ODD_BODIES[2], "InvalidJson", group="u-3")
    queue_moved_dead_letter(sqs, environment, ODD_BODIES[3])

    inspection = inspect(quiet_queue(environment))

    counts = {reason: len(messages) for reason, messages in inspection.by_reason().items()}
    assert counts == {"ModelError": 2, "InvalidJson": 1, TRIGGER_DEAD_LETTER_REASON: 1}
    assert sorted(dead_letter_bodies(sqs, environment)) == sorted(ODD_BODIES)
    assert features_bodies(sqs, environment) == []

    export = tmp_path / "dead-letters.jsonl"
    assert redrive.main(["--dry-run", "--export", str(export)]) == 0
    output = capsys.readouterr().out
    assert "nothing is moved" in output
    assert any(line.split()[:2] == ["ModelError", "2"] for line in output.splitlines())
    assert sorted(json.loads(line)["body"] for line in export.read_text().splitlines()) == sorted(ODD_BODIES)
    assert sorted(dead_letter_bodies(sqs, environment)) == sorted(ODD_BODIES)


def test_redrive_moves_every_message_back_byte_for_byte_deleting_each_after_its_send(environment, sqs):
    """A redrive must not lose or alter a record: each body goes back unchanged, and leaves the
    dead-letter queue only after the features queue accepted it."""
    for n, body in enumerate(ODD_BODIES):
        handler_dead_letter(sqs, environment, body, "ModelError", group=f"u-{n}")
    calls: list[tuple[str, list[str]]] = []
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register(
        "provide-client-params.sqs.SendMessageBatch",
        lambda params, **_: calls.append(("send", [entry["MessageBody"] for entry in params["Entries"]])),
    )
    boto3.DEFAULT_SESSION.events.register(
        "provide-client-params.sqs.DeleteMessageBatch", lambda params, **_: calls.append(("delete", params["Entries"]))
    )

    report = run_redrive(environment)

    assert report.moved == len(ODD_BODIES) and not report.send_refused
    assert sorted(features_bodies(sqs, environment)) == sorted(ODD_BODIES)
    assert dead_letter_bodies(sqs, environment) == []
    # Every delete comes after the send of as many messages.
    sent = deleted = 0
    for kind, entries in calls:
        if kind == "send":
            sent += len(entries)
        else:
            deleted += len(entries)
            assert deleted <= sent


def test_a_refused_send_leaves_the_message_in_the_dead_letter_queue(environment, sqs):
    """A message the features queue did not take must stay where it is, visible for the next run."""
    handler_dead_letter(sqs, environment, ODD_BODIES[0], "ModelError")
    handler_dead_letter(sqs, environment, ODD_BODIES[2], "ModelError", group="u-2")
    boto3.setup_default_session()

    with refuse_send_entries(boto3.DEFAULT_SESSION.events, lambda entry: "not json" in entry["MessageBody"]):
        report = run_redrive(environment)

    assert report.moved == 1 and len(report.send_refused) == 1
    assert features_bodies(sqs, environment) == [ODD_BODIES[0]]
    assert dead_letter_bodies(sqs, environment) == [ODD_BODIES[2]]


def test_running_the_redrive_twice_moves_nothing_the_second_time(environment, sqs):
    """Operators rerun a redrive when unsure it finished; that must not send anything twice."""
    for n, body in enumerate(ODD_BODIES):
        handler_dead_letter(sqs, environment, body, "ModelError", group=f"u-{n}")

    first, second = run_redrive(environment), run_redrive(environment)

    assert (first.moved, second.moved) == (len(ODD_BODIES), 0)
    assert sorted(features_bodies(sqs, environment)) == sorted(ODD_BODIES)


def test_replay_of_an_export_sends_each_body(environment, sqs, tmp_path, capsys):
    """An export taken before purging the dead-letter queue must be enough to re-publish its records."""
    for n, body in enumerate(ODD_BODIES):
        handler_dead_letter(sqs, environment, body, "ModelError", group=f"u-{n}")
    export = tmp_path / "dead-letters.jsonl"
    redrive.export(inspect(quiet_queue(environment)).messages, export)

    assert replay.main([str(export)]) == 0

    assert sorted(features_bodies(sqs, environment)) == sorted(ODD_BODIES)
    assert "sent     4" in capsys.readouterr().out
{%- if cookiecutter.input_source == "sqs-fifo" %}


def test_redrive_keeps_each_message_in_its_group(environment, sqs):
    """A FIFO source orders each key's events by group: a redriven record must go back to its group,
    under a deduplication id of its own so SQS does not drop it as the original's repeat."""
    dead_letter_ids = {
        handler_dead_letter(sqs, environment, body, "ModelError", group=f"u-{n}"): f"u-{n}"
        for n, body in enumerate(ODD_BODIES)
    }

    run_redrive(environment)

    messages = features_messages(sqs, environment)
    assert sorted(message["Attributes"]["MessageGroupId"] for message in messages) == sorted(dead_letter_ids.values())
    assert {message["Attributes"]["MessageDeduplicationId"] for message in messages} == {
        f"redrive-{message_id}" for message_id in dead_letter_ids
    }
{%- endif %}
{%- else %}


def stream_records(environment) -> list[dict]:
    """Every record of the features stream, shard after shard."""
    kinesis = boto3.client("kinesis")
    name = environment["FEATURES_STREAM_NAME"]
    records = []
    for shard in kinesis.list_shards(StreamName=name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator and (response := kinesis.get_records(ShardIterator=iterator))["Records"]:
            records += response["Records"]
            iterator = response.get("NextShardIterator")
    return records


def resent_records(environment) -> list[tuple[bytes, str, str]]:
    """Every record of the features stream as (original data, partition key, event id it carries):
    a record sent again is wrapped with its first delivery's event id (redelivery.py)."""
    resent = []
    for record in stream_records(environment):
        body, origin = unwrap(record["Data"].decode("utf-8", "surrogateescape"))
        event_id = origin.event_id if origin else ""
        resent.append((body.encode("utf-8", "surrogateescape"), record["PartitionKey"], event_id))
    return resent


def on_failure_dead_letter(sqs, environment, shard_id: str, first: str, last: str, batch_size: int) -> None:
    """Put the trigger's on-failure message for a sequence range in the dead-letter queue."""
    batch = {"shardId": shard_id, "startSequenceNumber": first, "endSequenceNumber": last, "batchSize": batch_size}
    body = {"KinesisBatchInfo": batch}
    sqs.send_message(QueueUrl=dead_letter_url(sqs, environment), MessageBody=json.dumps(body))


def sent_range(environment) -> tuple[str, list[str]]:
    """Put ODD_BODIES on the stream under one key (so one shard); return the shard and the sequence numbers."""
    outcomes = FeaturesProducer(environment).send([OutgoingEvent(body, "u-1") for body in ODD_BODIES])
    shard_id = outcomes[0].message_id.partition(":")[0]
    return shard_id, [outcome.message_id.partition(":")[2] for outcome in outcomes]


def test_dry_run_counts_by_reason_exports_the_records_and_moves_nothing(environment, sqs, tmp_path, capsys):
    """The dry run must tell handler failures from batches the trigger gave up on, and export the
    records such a batch stands for (not its metadata), so `make replay` re-publishes events."""
    shard_id, sequence_numbers = sent_range(environment)
    on_failure_dead_letter(sqs, environment, shard_id, sequence_numbers[0], sequence_numbers[-1], len(ODD_BODIES))
    handler_dead_letter(sqs, environment, "handler dead letter", "ModelError")

    inspection = inspect(quiet_queue(environment))

    counts = {reason: len(messages) for reason, messages in inspection.by_reason().items()}
    assert counts == {"ModelError": 1, TRIGGER_DEAD_LETTER_REASON: 1}
    assert len(dead_letter_bodies(sqs, environment)) == 2
    export = tmp_path / "dead-letters.jsonl"
    redrive.export(inspection.messages, export)
    exported = [json.loads(line) for line in export.read_text().splitlines()]
    assert sorted(record["body"] for record in exported) == sorted([*ODD_BODIES, "handler dead letter"])

    assert replay.main([str(export)]) == 0
    assert "sent     4" in capsys.readouterr().out
    assert len(stream_records(environment)) == 2 * len(ODD_BODIES) + 1


def test_redrive_resends_the_records_an_on_failure_message_names(environment, sqs):
    """The trigger's on-failure message holds no records, only their range: the redrive must read
    them back from the stream and put each again, bytes and partition key unchanged, each still
    known by its first delivery's eventID."""
    shard_id, sequence_numbers = sent_range(environment)
    on_failure_dead_letter(sqs, environment, shard_id, sequence_numbers[0], sequence_numbers[-1], len(ODD_BODIES))
    handler_dead_letter(sqs, environment, "handler dead letter", "ModelError")

    report = run_redrive(environment)

    assert (report.moved, report.events_sent) == (2, len(ODD_BODIES) + 1)
    resent = resent_records(environment)
    for body, sequence_number in zip(ODD_BODIES, sequence_numbers, strict=True):
        assert resent.count((body.encode(), "u-1", "")) == 1
        assert resent.count((body.encode(), "u-1", f"{shard_id}:{sequence_number}")) == 1
    assert [event_id for body, _, event_id in resent if body == b"handler dead letter"] == ["features-message-id"]
    assert dead_letter_bodies(sqs, environment) == []


def test_a_range_the_stream_no_longer_holds_stays_in_the_dead_letter_queue(environment, sqs):
    """Records past the stream's retention cannot be resent: the message stays, reported unrecoverable."""
    shard_id = boto3.client("kinesis").list_shards(StreamName=environment["FEATURES_STREAM_NAME"])["Shards"][0]
    on_failure_dead_letter(sqs, environment, shard_id["ShardId"], "1" * 56, "2" * 56, 3)

    report = run_redrive(environment)

    assert report.moved == 0 and len(report.unrecoverable) == 1
    assert len(dead_letter_bodies(sqs, environment)) == 1


def test_running_the_redrive_twice_moves_nothing_the_second_time(environment, sqs):
    """Operators rerun a redrive when unsure it finished; that must not send anything twice."""
    for body in ODD_BODIES:
        handler_dead_letter(sqs, environment, body, "ModelError")

    first, second = run_redrive(environment), run_redrive(environment)

    assert (first.moved, second.moved) == (len(ODD_BODIES), 0)
    assert sorted(body.decode() for body, _, _ in resent_records(environment)) == sorted(ODD_BODIES)
{%- endif %}


def test_a_dead_letter_that_arrives_during_the_run_is_left_for_the_next(environment, sqs):
    """While the pipeline runs, a redriven record that fails again is back in the dead-letter queue
    at once: a run that took it again would loop forever, so it leaves it, visible, for the next run."""
    handler_dead_letter(sqs, environment, ODD_BODIES[0], "ModelError")
    queue = quiet_queue(environment)
    # As if the message had arrived after the run started.
    queue.opened_at_ms = 0

    report = redrive.redrive(queue, FeaturesProducer(environment), Progress("redriving", None, None))

    assert report.moved == 0
    assert dead_letter_bodies(sqs, environment) == [ODD_BODIES[0]]


def test_send_of_a_file_sends_each_line_and_names_the_lines_that_are_not_json(environment, tmp_path, capsys):
    """Producers' bad events must reach the pipeline like good ones (it dead-letters them), but the
    operator should hear which lines were not JSON."""
    events = tmp_path / "events.jsonl"
    lines = [ODD_BODIES[0], ODD_BODIES[1], "", "not json at all"]
    events.write_text("\n".join(lines) + "\n", encoding="utf-8")

    assert send.main(["--file", str(events)]) == 0

    output = capsys.readouterr().out
    assert "sent     3" in output
    assert "not JSON 1 line(s) (4)" in output
{%- if cookiecutter.input_source == "kinesis" %}
    assert sorted(record["Data"].decode() for record in stream_records(environment)) == sorted(
        [ODD_BODIES[0], ODD_BODIES[1], "not json at all"]
    )
{%- else %}
    assert sorted(features_bodies(boto3.client("sqs"), environment)) == sorted(
        [ODD_BODIES[0], ODD_BODIES[1], "not json at all"]
    )
{%- endif %}


def test_a_file_that_cannot_be_read_is_a_clear_error(environment, tmp_path, capsys):
    """A typo in FILE= must say which file, not end in a traceback."""
    assert send.main(["--file", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    binary = tmp_path / "events.jsonl.gz"
    binary.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe")
    assert send.main(["--file", str(binary)]) == 2
    assert f"{binary}:1: not UTF-8" in capsys.readouterr().err


def test_send_of_sample_events_reports_how_many_were_sent(environment, samples_file, capsys):
    """`make send` with no file sends sample model inputs, the quickest way to see the pipeline work."""
    assert send.main(["--count", "25", "--seed", "3", "--samples", str(samples_file)]) == 0
    assert "sent     25" in capsys.readouterr().out


def envelope(n: int) -> OutgoingMessage:
    body = {
        "schema_version": "1.0",
        "prediction": {"id": f"rec-{n:04d}", "value_scaled": 2.0 * n},
        "message_id": f"m-{n}",
        "model_version": "7",
        "prediction_time": f"2026-01-01T00:00:0{n}.000Z",
    }
    return OutgoingMessage(
        key=f"m-{n}",
        body=json.dumps(body),
        attributes={"schema_version": "1.0", "model_version": "7", "endpoint_name": "e"},
        group=f"u-{n}",
        event_time_ms=1_700_000_000_000 + n,
    )


def test_tail_prints_one_line_per_prediction_and_stops_at_the_limit(environment, stage, executor):
    """Tail is how an operator sees predictions flow; each must be one readable line."""
    reader = PredictionReader(environment)
    assert prediction_sink(executor).send([envelope(n) for n in range(3)]) == {}
    out = StringIO()

    assert tail.follow(reader, out, limit=3, wait_seconds=0) == 3

    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    for line in lines:
        assert line.split()[2] == "model=7" and line.split()[1] in {"m-0", "m-1", "m-2"}
        assert len(line) < 200
{%- if cookiecutter.output_destination in ("sqs", "sns") %}


def test_the_tail_command_shows_what_arrived_and_stops_at_the_limit(environment, executor, capsys):
    """`make tail LIMIT=N` reads the {{ "predictions queue" if cookiecutter.output_destination == "sqs" else "topic's tail queue" }}, which holds what arrived before it started."""
    assert prediction_sink(executor).send([envelope(n) for n in range(2)]) == {}

    assert tail.main(["--limit", "2"{% if cookiecutter.output_destination == "sqs" %}, "--consume"{% endif %}]) == 0

    lines = capsys.readouterr().out.splitlines()
    assert sorted(line.split()[1] for line in lines) == ["m-0", "m-1"]
{%- endif %}
{%- if cookiecutter.output_destination == "sqs" %}


def test_tail_against_aws_takes_nothing_off_the_queue_without_consume(environment, executor, capsys):
    """Tailing a queue a consumer depends on would steal its predictions: it must be asked for."""
    assert prediction_sink(executor).send([envelope(n) for n in range(2)]) == {}

    assert tail.main(["--limit", "2"]) == 2

    error = capsys.readouterr().err
    assert "CONSUME=1" in error and "consumer never gets them" in error
    assert len(PredictionReader(environment).read()) == 2, "both predictions are still in the queue"
{%- endif %}


def test_a_bare_model_input_is_sent_under_its_own_key_like_an_enveloped_one():
    """Bare input is the main form: events of one key must share a FIFO group or partition key too."""
    bare = json.dumps({"account": "a-0042", "id": "rec-0001", "value": 3})
    enveloped = json.dumps({"event_id": "e-1", "features": json.loads(bare)})
    assert event_group(bare, "account") == event_group(enveloped, "account") == "a-0042"
    # Without the key field, an envelope goes under its event id.
    assert event_group(enveloped, "region") == "e-1"


def test_the_producer_keys_events_by_the_stages_partition_key_field(environment):
    """The key field is the stage's setting, whatever the model's inputs are called."""
    producer = FeaturesProducer(environment | {"PARTITION_KEY_FIELD": "account"})
    assert producer.key_field == "account"
