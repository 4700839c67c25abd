# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The handler end to end through the Chalice test client, moto and the local endpoint.

Each test checks where every record of a batch ended: its prediction in the destination, a
dead-letter record with its reason, or the returned batchItemFailures. Never two, never none.
"""

import json

import chalice.test
import jsonschema
from chalice.test import Client

from template_tools.endpoint_server import Fault
from template_tools.stage import PROJECT_DIR

from .echo_inputs import (
    broken_json_body,
    echo_body,
    echo_input,
    expected_output,
    id_marker,
    schema_breaking_input,
)
from .lambda_events import failure_id, lambda_event, message_id

HANDLER = "handle_feature_events"
ENVELOPE_SCHEMA = json.loads((PROJECT_DIR / "schemas" / "prediction-envelope.schema.json").read_text())


def invoke(chalice_app, bodies: list[str]) -> tuple[dict, dict]:
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        event = lambda_event(client, bodies)
        return client.lambda_.invoke(HANDLER, event).payload, event


def failed_ids(response: dict) -> set[str]:
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}


def test_every_record_of_a_good_batch_is_published_as_an_envelope(pipeline, chalice_app, stage):
    """The happy path: ten records, ten envelopes with the documented fields and the model's answer."""
    bodies = [echo_body(n) for n in range(10)]
    response, event = invoke(chalice_app, bodies)
    assert response == {"batchItemFailures": []}
    envelopes = pipeline.predictions()
    assert sorted(e["message_id"] for e in envelopes) == sorted(message_id(r) for r in event["Records"])
    records = zip(event["Records"], bodies, strict=True)
    answers = {message_id(record): expected_output(json.loads(body)) for record, body in records}
    for envelope in envelopes:
        assert set(envelope) == set(ENVELOPE_SCHEMA["required"])
        assert envelope["endpoint_name"] == stage.environment_variables["ENDPOINT_NAME"]
        assert envelope["endpoint_variant"] == "AllTraffic"
        assert envelope["model_version"] == stage.environment_variables["MODEL_VERSION"]
        assert envelope["prediction"] == answers[envelope["message_id"]]
        assert envelope["latency_ms"] >= 0
    assert pipeline.dead_letters() == []


def test_the_envelope_form_carries_the_producers_event_id_and_time(pipeline, chalice_app):
    """Consumers correlate predictions with the producer's own ids and clock."""
    body = json.dumps({"event_id": "click-42", "event_time": "2026-11-25T10:00:00.000Z", "features": echo_input(1)})
    response, _ = invoke(chalice_app, [body])
    assert response == {"batchItemFailures": []}
    (envelope,) = pipeline.predictions()
    assert (envelope["event_id"], envelope["event_time"]) == ("click-42", "2026-11-25T10:00:00.000Z")
    assert envelope["prediction"] == expected_output(echo_input(1))


def test_a_malformed_record_is_dead_lettered_untouched_and_the_rest_are_predicted(pipeline, chalice_app):
    """One bad body must not fail its nine neighbours, and must keep its exact bytes and a reason."""
    bodies = [echo_body(n) for n in range(9)]
    bodies.insert(4, broken_json_body(9))
    response, event = invoke(chalice_app, bodies)
    assert response == {"batchItemFailures": []}
    assert len(pipeline.predictions()) == 9
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == bodies[4]
    attributes = {name: value["StringValue"] for name, value in dead["MessageAttributes"].items()}
    assert attributes["error_code"] == "InvalidJson"
    assert attributes["source_message_id"] == message_id(event["Records"][4])
{%- if cookiecutter.input_source == "kinesis" %}
    # A Kinesis record carries no attempt number, so the dead letter claims none.
    assert "attempt_count" not in attributes
{%- else %}
    assert attributes["attempt_count"] == "1"
{%- endif %}
    assert "not JSON" in attributes["error_reason"]


def test_a_record_with_half_a_surrogate_pair_is_dead_lettered_and_the_rest_are_predicted(pipeline, chalice_app):
    """JSON's "\\ud800" escape parses to text no UTF-8 can carry: its prediction could be sent
    nowhere. Before, encoding that prediction failed the whole batch, on every delivery."""
    lone = '{"event_id": "click-\\ud800", "features": ' + echo_body(1) + "}"
    bodies = [echo_body(0), lone, echo_body(2)]
    response, _ = invoke(chalice_app, bodies)
    assert response == {"batchItemFailures": []}
    predicted = [envelope["prediction"] for envelope in pipeline.predictions()]
    expected = [expected_output(echo_input(n)) for n in (0, 2)]
    assert sorted(predicted, key=json.dumps) == sorted(expected, key=json.dumps)
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == lone
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "InvalidJson"
    assert "surrogate" in dead["MessageAttributes"]["error_reason"]["StringValue"]


def test_a_record_the_model_rejects_is_dead_lettered_with_the_models_message(pipeline, chalice_app, endpoint):
    """A ModelError for one record in a batch call is isolated to that record and not retried."""
    endpoint.inject(Fault(error="ModelError", match=id_marker(2)))
    bodies = [echo_body(n) for n in range(5)]
    response, _ = invoke(chalice_app, bodies)
    assert response == {"batchItemFailures": []}
    predicted = {envelope["prediction"]["id"] for envelope in pipeline.predictions()}
    assert predicted == {echo_input(n)["id"] for n in (0, 1, 3, 4)}
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == bodies[2]
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "ModelError"
    assert "Injected fault" in dead["MessageAttributes"]["error_reason"]["StringValue"]


def test_a_record_that_breaks_the_input_schema_never_reaches_the_endpoint(pipeline, chalice_app, endpoint):
    """The schema check refuses a bad input with the validator's message and saves the endpoint call."""
    body = json.dumps(schema_breaking_input(2))
    response, _ = invoke(chalice_app, [body])
    assert response == {"batchItemFailures": []}
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == body
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "SchemaViolation"
    assert "'id'" in dead["MessageAttributes"]["error_reason"]["StringValue"]
    assert endpoint.invocations == 0


def test_an_oversize_record_is_dead_lettered_without_an_endpoint_call(pipeline, chalice_app, endpoint, monkeypatch):
    """A body above MAX_RECORD_BYTES is refused whole, its bytes kept for the dead-letter queue."""
    monkeypatch.setenv("MAX_RECORD_BYTES", "2048")
    oversize = echo_body(9, padding="x" * 3000)
    response, _ = invoke(chalice_app, [echo_body(1), oversize])
    assert response == {"batchItemFailures": []}
    assert len(pipeline.predictions()) == 1
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == oversize
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "RecordTooLarge"
    assert endpoint.invocations == 1


def test_an_invocation_has_the_functions_configured_timeout_as_in_lambda(chalice_app, stage):
    """Chalice's test client would give 3 s whatever the timeout; Lambda gives lambda_timeout."""
    remaining_ms = chalice.test.LambdaContext(HANDLER, memory_size=512).get_remaining_time_in_millis()
    assert (stage.lambda_timeout - 1) * 1000 < remaining_ms <= stage.lambda_timeout * 1000


def test_records_are_retried_while_the_endpoint_throttles_and_published_once_it_recovers(
    pipeline, chalice_app, endpoint
):
    """Throttling that outlasts botocore's retries sends records back to SQS; none is dead-lettered or lost."""
    endpoint.inject(Fault(error="ThrottlingException"))
    bodies = [echo_body(n) for n in range(6)]
    response, event = invoke(chalice_app, bodies)
    assert failed_ids(response) == {failure_id(record) for record in event["Records"]}
    assert pipeline.predictions() == []
    assert pipeline.dead_letters() == []

    endpoint.clear_faults()
    redelivered, _ = invoke(chalice_app, bodies)
    assert redelivered == {"batchItemFailures": []}
    assert len(pipeline.predictions()) == 6


def test_predictions_the_destination_refuses_are_reported_as_failures(pipeline, chalice_app):
    """Nothing counts as done before the destination accepted it: refused entries come back as failures."""
    bodies = [echo_body(n) for n in range(8)]
    with pipeline.refusing(id_marker(5)):
        response, event = invoke(chalice_app, bodies)
    assert failed_ids(response) == {failure_id(event["Records"][5])}
    assert len(pipeline.predictions()) == 7


def test_records_not_started_before_the_deadline_are_retried(pipeline, chalice_app, endpoint, stage, monkeypatch):
    """Running out of time reports unfinished records instead of letting Lambda kill the batch."""
    # A reserve longer than the function's whole timeout: the deadline has passed at the start.
    monkeypatch.setenv("DEADLINE_RESERVE_MS", str((stage.lambda_timeout + 1) * 1000))
    bodies = [echo_body(n) for n in range(4)]
    response, event = invoke(chalice_app, bodies)
    assert failed_ids(response) == {failure_id(record) for record in event["Records"]}
    assert endpoint.invocations == 0
    assert pipeline.predictions() == []


def test_every_envelope_the_handler_publishes_matches_the_published_schema(pipeline, chalice_app):
    """schemas/ is the contract consumers code against; the handler must never drift from it."""
    bodies = [echo_body(1), json.dumps({"event_id": "e-1", "features": echo_input(2)})]
    response, _ = invoke(chalice_app, bodies)
    assert response == {"batchItemFailures": []}
    envelopes = pipeline.predictions()
    assert len(envelopes) == 2
    for envelope in envelopes:
        jsonschema.validate(envelope, ENVELOPE_SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
