# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The output contract: every envelope the pipeline publishes matches the schema consumers code against.

schemas/prediction-envelope.schema.json is what consuming teams validate with (see
examples/consume_predictions.py). These tests run the real handler through the Chalice test client
with moto and the local endpoint, over the sample events `make events` writes and a stream of echo
model inputs, and check every envelope that reached the destination. If one fails, either the handler drifted or
the schema must change: then raise its schema_version and tell the consumers.
"""

import copy
import json
from datetime import UTC, datetime, timedelta

import fastjsonschema
import jsonschema
import pytest
from chalice.test import Client

from template_tools.sample_event_files import FEATURE_EVENTS
from template_tools.stage import PROJECT_DIR

from .echo_inputs import echo_input
from .lambda_events import lambda_event, message_id
from .sample_envelopes import sample_envelope

HANDLER = "handle_feature_events"
SCHEMA = json.loads((PROJECT_DIR / "schemas" / "prediction-envelope.schema.json").read_text())
# The validator the example consumer uses; the first test also checks the schema with jsonschema.
validate = fastjsonschema.compile(SCHEMA)
STREAM_EVENTS = 40
# A well-formed envelope, for the checks that the schema refuses what it should.
VALID_ENVELOPE = sample_envelope() | {"event_id": "click-42"}


def stream_bodies(count: int) -> list[str]:
    """Echo model inputs, every other one in the producer envelope form."""
    start = datetime.now(UTC) - timedelta(seconds=count)
    bodies = []
    for number in range(count):
        document = echo_input(number)
        if number % 2:
            event_time = (start + timedelta(seconds=number)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            document = {"event_id": f"click-{number}", "event_time": event_time, "features": document}
        bodies.append(json.dumps(document))
    return bodies


def published_envelopes(pipeline) -> list[dict]:
    """Every envelope that reached the destination, each checked against the schema."""
    envelopes = pipeline.predictions()
    assert envelopes, "nothing reached the destination"
    for envelope in envelopes:
        validate(envelope)
    return envelopes


def test_the_schema_is_valid_json_schema_2020_12():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(VALID_ENVELOPE, SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    assert validate(copy.deepcopy(VALID_ENVELOPE)) == VALID_ENVELOPE


def test_every_envelope_from_the_sample_events_matches_the_schema(pipeline, chalice_app, sample_events_dir):
    """events/feature-events.json holds both input forms: a bare model input and producer envelopes.

    `make events` writes it from the samples; here, from the echo model's.
    """
    event = json.loads((sample_events_dir / FEATURE_EVENTS).read_text())
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        assert client.lambda_.invoke(HANDLER, event).payload == {"batchItemFailures": []}
    envelopes = published_envelopes(pipeline)
    assert sorted(e["message_id"] for e in envelopes) == sorted(message_id(r) for r in event["Records"])


def test_every_envelope_from_a_stream_of_events_matches_the_schema(pipeline, chalice_app):
    """Forty events in one batch, in both forms: every envelope published for them is valid and traceable."""
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        event = lambda_event(client, stream_bodies(STREAM_EVENTS))
        assert client.lambda_.invoke(HANDLER, event).payload == {"batchItemFailures": []}
    envelopes = published_envelopes(pipeline)
    assert {e["message_id"] for e in envelopes} == {message_id(r) for r in event["Records"]}
    assert {e["event_id"] for e in envelopes} & {f"click-{n}" for n in range(1, STREAM_EVENTS, 2)}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda e: e.pop("message_id"), "message_id"),
        (lambda e: e.update(schema_version=1.0), "schema_version"),
        (lambda e: e.update(schema_version="2.0"), "schema_version"),
        (lambda e: e.update(prediction_time="yesterday"), "prediction_time"),
        (lambda e: e.update(unexpected="field"), "unexpected"),
    ],
    ids=["missing-message_id", "schema_version-a-number", "schema_version-unknown", "bad-time", "extra-field"],
)
def test_the_schema_refuses_a_broken_envelope(change, reason):
    """A consumer relying on the schema is protected from these; the handler must never send them."""
    envelope = copy.deepcopy(VALID_ENVELOPE)
    change(envelope)
    with pytest.raises(fastjsonschema.JsonSchemaException) as refused:
        validate(envelope)
    assert reason in str(refused.value)
