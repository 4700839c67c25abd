# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The handler calls the team's hooks in chalicelib/extension_points.py, and survives them failing.

The team edits those hooks, so these tests never rely on what they do as shipped: every test
puts known hooks in their place (`hooks`), then changes the one it is about, and checks what the
runtime made of it end to end: the endpoint's request, the destination's key, the published
envelope, the dead-letter record.
"""

import hashlib
import json
from collections.abc import Callable

import boto3
import jsonschema
import pytest
from chalice.test import Client

from chalicelib import extension_points
from template_tools.stage import PROJECT_DIR

from .lambda_events import lambda_event, message_id

HANDLER = "handle_feature_events"
ENVELOPE_SCHEMA = json.loads((PROJECT_DIR / "schemas" / "prediction-envelope.schema.json").read_text())
RECORDS = 4
# The field a test names when it turns keying on where the destination is not keyed.
TEAM_KEY_FIELD = "team_key"


def canonical(document: dict) -> str:
    return json.dumps(document, sort_keys=True)


def content_key(model_input: dict) -> str:
    """A key every distinct input has its own of, whatever fields the model takes."""
    return "k-" + hashlib.sha256(canonical(model_input).encode()).hexdigest()[:16]


@pytest.fixture
def model_inputs(model_samples) -> list[dict]:
    """A few distinct inputs the model under test answers."""
    inputs = model_samples[:RECORDS]
    assert len({canonical(model_input) for model_input in inputs}) == RECORDS
    return inputs


@pytest.fixture
def hooks(monkeypatch) -> pytest.MonkeyPatch:
    """Known hooks in place of the team's: the body as input, a key from its content, no extra fields."""
    monkeypatch.setattr(extension_points, "model_input", lambda document: document)
    monkeypatch.setattr(extension_points, "prediction_key", lambda model_input, key_field: content_key(model_input))
    monkeypatch.setattr(extension_points, "extra_envelope_fields", lambda model_input, prediction: {})
    return monkeypatch


@pytest.fixture
def endpoint_requests(endpoint, monkeypatch) -> list[dict]:
    """Every record the local endpoint is sent, whatever the request's shape, in arrival order."""
    received: list[dict] = []
    answer = endpoint.handle_invocation

    def recording(name: str, body: bytes, headers: dict[str, str]):
        text = body.decode()
        if headers.get("content-type", "").startswith("application/jsonlines"):
            received.extend(json.loads(line) for line in text.splitlines() if line.strip())
        else:
            document = json.loads(text)
            received.extend(document.get("instances", [document]))
        return answer(name, body, headers)

    monkeypatch.setattr(endpoint, "handle_invocation", recording)
    return received


def invoke(chalice_app, bodies: list[str]) -> tuple[dict, dict]:
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        event = lambda_event(client, bodies)
        return client.lambda_.invoke(HANDLER, event).payload, event


def attributes(dead_letter: dict) -> dict[str, str]:
    return {name: value["StringValue"] for name, value in dead_letter["MessageAttributes"].items()}


def published_keys(environment: dict[str, str]) -> dict[str, str]:
    """{message id: what keys its prediction} as the destination holds it; {} for an unkeyed one."""
    if "PREDICTIONS_TABLE_NAME" in environment:
        field = environment["PARTITION_KEY_FIELD"]
        items = boto3.client("dynamodb").scan(TableName=environment["PREDICTIONS_TABLE_NAME"])["Items"]
        return {item["message_id"]["S"]: item[field]["S"] for item in items}
    if "PREDICTIONS_STREAM_NAME" in environment:
        kinesis, stream = boto3.client("kinesis"), environment["PREDICTIONS_STREAM_NAME"]
        keys = {}
        for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
            iterator = kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for record in kinesis.get_records(ShardIterator=iterator)["Records"]:
                keys[json.loads(record["Data"])["message_id"]] = record["PartitionKey"]
        return keys
    if environment.get("PREDICTIONS_QUEUE_NAME", "").endswith(".fifo"):
        sqs = boto3.client("sqs")
        url = sqs.get_queue_url(QueueName=environment["PREDICTIONS_QUEUE_NAME"])["QueueUrl"]
        keys = {}
        while messages := sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["MessageGroupId"]
        ).get("Messages", []):
            for message in messages:
                keys[json.loads(message["Body"])["message_id"]] = message["Attributes"]["MessageGroupId"]
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)],
            )
        return keys
    return {}


def test_the_teams_model_input_is_what_the_endpoint_receives(
    pipeline, chalice_app, hooks, model_inputs, endpoint_requests
):
    """A team whose producers wrap the input in a document of their own unwraps it in model_input."""
    hooks.setattr(extension_points, "model_input", lambda document: document["payload"])
    bodies = [json.dumps({"payload": model_input, "sent_by": "team-a"}) for model_input in model_inputs]

    response, event = invoke(chalice_app, bodies)

    assert response == {"batchItemFailures": []}
    assert sorted(map(canonical, endpoint_requests)) == sorted(map(canonical, model_inputs))
    assert sorted(e["message_id"] for e in pipeline.predictions()) == sorted(map(message_id, event["Records"]))
    assert pipeline.dead_letters() == []


def test_the_producer_envelope_is_read_by_the_runtime_not_by_model_input(
    pipeline, chalice_app, hooks, model_inputs, endpoint_requests
):
    """The envelope is the contract between teams: its features are the model input as they are."""

    def refuse(document: dict) -> dict:
        raise AssertionError("model_input was handed a producer envelope")

    hooks.setattr(extension_points, "model_input", refuse)
    body = json.dumps({"event_id": "click-1", "event_time": "2026-11-25T10:00:00Z", "features": model_inputs[0]})

    response, _ = invoke(chalice_app, [body])

    assert response == {"batchItemFailures": []}
    assert endpoint_requests == [model_inputs[0]]
    assert [e["event_id"] for e in pipeline.predictions()] == ["click-1"]


def test_the_teams_prediction_key_keys_a_keyed_destination_and_is_never_asked_otherwise(
    pipeline, chalice_app, stage, hooks, model_inputs, monkeypatch
):
    """The team's key is the DynamoDB key, the Kinesis partition key, the FIFO message group; a
    destination that keeps nothing together never asks for one."""
    environment = stage.environment_variables
    keyed = "PARTITION_KEY_FIELD" in environment or environment.get("PREDICTIONS_QUEUE_NAME", "").endswith(".fifo")
    if keyed:
        # A FIFO predictions queue groups by the source's group unless a key field is set.
        monkeypatch.setenv("PARTITION_KEY_FIELD", environment.get("PARTITION_KEY_FIELD", TEAM_KEY_FIELD))
    team_keys = {canonical(model_input): f"team-{n}" for n, model_input in enumerate(model_inputs)}
    seen_fields = set()

    def team_key(model_input: dict, key_field: str) -> str:
        seen_fields.add(key_field)
        return team_keys[canonical(model_input)]

    hooks.setattr(extension_points, "prediction_key", team_key)

    response, event = invoke(chalice_app, [json.dumps(model_input) for model_input in model_inputs])

    assert response == {"batchItemFailures": []}
    if not keyed:
        assert len(pipeline.predictions()) == len(model_inputs)
        assert seen_fields == set()
        return
    expected = {message_id(record): f"team-{n}" for n, record in enumerate(event["Records"])}
    assert published_keys(environment) == expected
    assert seen_fields == {environment.get("PARTITION_KEY_FIELD", TEAM_KEY_FIELD)}


def test_a_record_the_team_gives_no_key_is_dead_lettered_alone(pipeline, chalice_app, hooks, model_inputs, monkeypatch):
    """No key (None) means the prediction has nowhere to go in a keyed destination."""
    monkeypatch.setenv("PARTITION_KEY_FIELD", TEAM_KEY_FIELD)
    keyless = canonical(model_inputs[1])
    hooks.setattr(
        extension_points,
        "prediction_key",
        lambda model_input, key_field: None if canonical(model_input) == keyless else content_key(model_input),
    )
    bodies = [json.dumps(model_input) for model_input in model_inputs]

    response, event = invoke(chalice_app, bodies)

    assert response == {"batchItemFailures": []}
    assert len(pipeline.predictions()) == RECORDS - 1
    (dead,) = pipeline.dead_letters()
    assert (dead["Body"], attributes(dead)["error_code"]) == (bodies[1], "MissingPartitionKey")
    assert attributes(dead)["source_message_id"] == message_id(event["Records"][1])


def test_the_teams_extra_fields_are_published_under_extra_and_match_the_schema(
    pipeline, chalice_app, hooks, model_inputs
):
    def extra(model_input: dict, prediction: object) -> dict:
        return {"input_fields": sorted(model_input), "prediction_kind": type(prediction).__name__, "team": "a"}

    hooks.setattr(extension_points, "extra_envelope_fields", extra)

    response, _ = invoke(chalice_app, [json.dumps(model_input) for model_input in model_inputs])

    assert response == {"batchItemFailures": []}
    envelopes = pipeline.predictions()
    assert sorted(e["extra"]["input_fields"] for e in envelopes) == sorted(sorted(m) for m in model_inputs)
    for envelope in envelopes:
        jsonschema.validate(envelope, ENVELOPE_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        assert envelope["extra"]["prediction_kind"] == type(envelope["prediction"]).__name__
        assert envelope["extra"]["team"] == "a"
        assert set(envelope) == set(ENVELOPE_SCHEMA["required"]) | {"extra"}


def test_no_extra_fields_leave_the_envelope_as_it_was(pipeline, chalice_app, hooks, model_inputs):
    """Consumers of an envelope without extras see exactly the fields they always did."""
    response, _ = invoke(chalice_app, [json.dumps(model_inputs[0])])

    assert response == {"batchItemFailures": []}
    (envelope,) = pipeline.predictions()
    assert set(envelope) == set(ENVELOPE_SCHEMA["required"])


def failing(hook: str, answer: Callable[[], object]) -> Callable[[pytest.MonkeyPatch, str], None]:
    """Put a version of `hook` in place that answers `answer()` for the input `target` (canonical JSON)."""

    def install(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
        normal = getattr(extension_points, hook)

        def hook_for_one(model_input: dict, *rest: object) -> object:
            return answer() if canonical(model_input) == target else normal(model_input, *rest)

        monkeypatch.setattr(extension_points, hook, hook_for_one)

    return install


def raise_(error: Exception) -> Callable[[], object]:
    def answer() -> object:
        raise error

    return answer


@pytest.mark.parametrize(
    ("install", "reason"),
    [
        (
            failing("model_input", raise_(KeyError("payload"))),
            "extension_points.model_input raised KeyError: 'payload'",
        ),
        (failing("model_input", lambda: ["not", "a", "dict"]), "extension_points.model_input returned list"),
        (failing("model_input", lambda: {"when": {1, 2}}), "extension_points.model_input returned a dict JSON cannot"),
        (
            failing("prediction_key", raise_(ValueError("no user for this session"))),
            "extension_points.prediction_key raised ValueError: no user for this session",
        ),
        (failing("prediction_key", lambda: 42), "extension_points.prediction_key returned int"),
        (
            failing("extra_envelope_fields", raise_(RuntimeError("lookup table missing"))),
            "extension_points.extra_envelope_fields raised RuntimeError: lookup table missing",
        ),
        (
            failing("extra_envelope_fields", lambda: {"message_id": "mine", "team": "a"}),
            "extension_points.extra_envelope_fields returned ['message_id']",
        ),
        (
            failing("extra_envelope_fields", lambda: {"seen": {1, 2}}),
            "extension_points.extra_envelope_fields returned a value JSON cannot hold",
        ),
        (failing("extra_envelope_fields", lambda: "team-a"), "extension_points.extra_envelope_fields returned str"),
    ],
    ids=[
        "model_input-raises",
        "model_input-not-a-dict",
        "model_input-not-json",
        "prediction_key-raises",
        "prediction_key-not-a-string",
        "extra-raises",
        "extra-names-an-envelope-field",
        "extra-not-json",
        "extra-not-a-dict",
    ],
)
def test_a_hook_that_fails_for_one_record_dead_letters_that_record_alone(
    pipeline, chalice_app, hooks, model_inputs, monkeypatch, install, reason
):
    """The team's bug costs one record, kept untouched with the hook's own words; the batch goes on."""
    # Keyed, so that prediction_key is called whatever the destination.
    monkeypatch.setenv("PARTITION_KEY_FIELD", TEAM_KEY_FIELD)
    # model_input sees the body, the other hooks the model input: here the same document.
    install(hooks, canonical(model_inputs[2]))
    bodies = [json.dumps(model_input) for model_input in model_inputs]

    response, event = invoke(chalice_app, bodies)

    assert response == {"batchItemFailures": []}
    published = pipeline.predictions()
    assert sorted(e["message_id"] for e in published) == sorted(
        message_id(record) for n, record in enumerate(event["Records"]) if n != 2
    )
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == bodies[2]
    assert attributes(dead)["error_code"] == "ExtensionPointError"
    assert attributes(dead)["error_reason"].startswith(reason)
    assert attributes(dead)["source_message_id"] == message_id(event["Records"][2])
