# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make local` end to end: every event sent comes out as a prediction or a dead letter.

The pipeline serves the echo model (template_tools/echo_model/) and draws its inputs from the
echo samples, so these tests hold whatever model/ holds.
"""

import io
import json
import os
import shutil
{%- if cookiecutter.output_destination == "dynamodb" %}
from collections import Counter
{%- endif %}

import fastjsonschema
import pytest

from chalicelib.template_runtime.settings import MAX_RECEIVE_COUNT
from template_tools.emulator import Redelivery
from template_tools.features_producer import PARTITION_KEY_FIELD, producer_key_field
from template_tools.local_pipeline import (
    EXERCISE_TRIGGER_LIMITS,
    EndpointStartError,
    PipelineHooks,
    PipelineProgress,
    PipelineSummary,
    SampleEvent,
    event_key,
    handler_redelivery_environment,
    model_input_schema_path,
    run_local_pipeline,
    sample_events,
    schema_breaking,
)
from template_tools.stage import load_stage

from .echo_inputs import expected_output

COUNT = 60
SEED = 11
# High enough that this seed breaks a few of the 60 events, of both kinds.
MALFORMED_RATE = 0.1
ENVELOPE_KEYS = {
    "schema_version", "prediction", "message_id", "event_id", "endpoint_name", "endpoint_variant",
    "model_version", "event_time", "prediction_time", "latency_ms", "endpoint_latency_ms",
}  # fmt: skip
KEY_FIELD = producer_key_field(load_stage("dev").environment_variables)


def _error_code(dead_letter: dict) -> str | None:
    return dead_letter.get("MessageAttributes", {}).get("error_code", {}).get("StringValue")


@pytest.mark.slow
def test_every_event_is_predicted_or_dead_lettered_and_none_is_lost(model_dir, samples_file):
    """The pipeline's promise: nothing a producer sends disappears without a trace."""
    schema_path = model_input_schema_path(model_dir)
    events = sample_events(COUNT, SEED, MALFORMED_RATE, samples_path=samples_file, schema_path=schema_path)
    not_json = [event for event in events if event.broken == "not_json"]
    schema_broken = [event for event in events if event.broken == "schema"]
    assert not_json and schema_broken, "the seed should break events of both kinds"

    summary = run_local_pipeline(
        COUNT,
        SEED,
        MALFORMED_RATE,
        model_dir=model_dir,
        progress=None,
        events=events,
        trigger_limits=EXERCISE_TRIGGER_LIMITS,
    )

    assert summary.lost == 0
    assert summary.sent == COUNT
{%- if cookiecutter.output_destination == "dynamodb" %}
    # The table keeps each key's newest prediction: an event of a key whose newer (or same-millisecond)
    # prediction was written first is superseded, an outcome the ledger checks against the table.
    assert summary.predicted + summary.dead_lettered + summary.superseded == summary.sent
    repeated_keys = Counter(event_key(event, KEY_FIELD) for event in events if not event.broken)
    assert summary.superseded <= sum(count - 1 for count in repeated_keys.values()), "only a repeated key's events"
{%- else %}
    assert summary.predicted + summary.dead_lettered == summary.sent
{%- endif %}
    assert summary.dead_lettered == len(not_json) + len(schema_broken)
    # Each broken event is dead-lettered by the handler, with the code its kind of breakage calls for.
    by_event_id = {event.event_id: event for event in events}
    event_ids = summary.ledger.event_ids
    codes = {
        event_ids[message["MessageAttributes"]["source_message_id"]["StringValue"]]: _error_code(message)
        for message in summary.dead_letters
    }
    assert codes == {event.event_id: event.expected_code for event in not_json + schema_broken}
    # Each prediction is the model's answer to its own event's input, in a full envelope.
    for envelope in summary.predictions:
        assert set(envelope) == ENVELOPE_KEYS
        assert envelope["prediction"] == expected_output(by_event_id[envelope["event_id"]].features)
    # A dead letter carries the body exactly as it was sent.
    assert {event.body() for event in not_json} <= {message["Body"] for message in summary.dead_letters}


# What the deployed function is told of its source's redelivery (deploy/source.py function_environment).
{%- if cookiecutter.input_source == "kinesis" %}
# A stream counts no deliveries: the function gets no MAX_RECEIVE_COUNT, whatever the retries.
EXPECTED_RECEIVE_COUNT = {4: None, None: None}
{%- else %}
# A queue's maxReceiveCount; without a redrive policy, none.
EXPECTED_RECEIVE_COUNT = {4: "4", None: None}
{%- endif %}


@pytest.mark.slow
@pytest.mark.parametrize("max_receive_count", [4, None])
def test_the_handler_runs_with_the_receive_count_the_deployed_function_would_get(
    model_dir, samples_file, max_receive_count
):
    """Local mode tells the handler what the stack tells the function, so a record's last delivery ends as deployed."""
    seen: list[str | None] = []

    def record_environment(handler):
        def invoke(event, context):
            seen.append(os.environ.get(MAX_RECEIVE_COUNT))
            return handler(event, context)

        return invoke

    summary = run_local_pipeline(
        3,
        SEED,
        0.0,
        model_dir=model_dir,
        samples_path=samples_file,
        progress=None,
        max_receive_count=max_receive_count,
        hooks=PipelineHooks(wrap_handler=record_environment),
        trigger_limits=EXERCISE_TRIGGER_LIMITS,
    )

    assert summary.lost == 0
    assert seen and set(seen) == {EXPECTED_RECEIVE_COUNT[max_receive_count]}


def test_only_a_queue_source_tells_the_handler_its_receive_count():
    """The receive count follows the source's ARN, as the fix-up after `chalice deploy` reads it from the mapping."""
    queue = "arn:aws:sqs:eu-west-1:123456789012:features"
    stream = "arn:aws:kinesis:eu-west-1:123456789012:stream/features"
    assert handler_redelivery_environment(queue, Redelivery(max_receive_count=3)) == {MAX_RECEIVE_COUNT: "3"}
    # No redrive policy: a variable left by the developer's shell or an earlier run goes.
    assert handler_redelivery_environment(queue, Redelivery(max_receive_count=None)) == {MAX_RECEIVE_COUNT: None}
    assert handler_redelivery_environment(stream, Redelivery(max_receive_count=3)) == {}


def test_a_model_the_endpoint_cannot_load_stops_the_run_with_the_models_own_error(model_dir, samples_file, tmp_path):
    """Local mode needs a model that loads; when it does not, the user must read why, not a traceback."""
    broken = tmp_path / "model"
    shutil.copytree(model_dir, broken)
    (broken / "echo.json").write_text(json.dumps({"format": "not-echo"}), encoding="utf-8")

    with pytest.raises(EndpointStartError, match="expected format"):
        run_local_pipeline(10, model_dir=broken, samples_path=samples_file, progress=None)


@pytest.mark.parametrize(
    "schema",
    [
        # The echo model's own: the required id goes.
        {"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}, "value": {"type": "number"}}},
        # Nothing required: a declared property gets a value of a type it refuses.
        {"type": "object", "properties": {"value": {"type": "number"}}},
        {"type": "object", "properties": {"value": {"type": ["object", "array", "string", "number", "boolean"]}}},
        # A required field the input lacks cannot be dropped; its other properties can still be broken.
        {"type": "object", "required": ["missing"], "properties": {"id": {"type": "string"}}},
    ],
)
def test_a_schema_breaking_input_really_breaks_the_given_schema(schema):
    """The malformed "schema" events must exercise the handler's schema check, whatever the model's schema."""
    valid = {"id": "rec-0001", "value": 1.5}
    if "missing" not in schema.get("required", []):
        fastjsonschema.validate(schema, valid)

    broken = schema_breaking(valid, schema)

    assert isinstance(broken, dict)
    with pytest.raises(fastjsonschema.JsonSchemaException):
        fastjsonschema.validate(schema, broken)


def test_a_schema_nothing_breaks_gets_json_that_is_not_an_object(tmp_path, samples_file):
    """With no schema, or one that accepts any object, the broken body is JSON the handler refuses as InvalidInput."""
    permissive = tmp_path / "input.schema.json"
    permissive.write_text(json.dumps({"type": "object"}), encoding="utf-8")
    assert schema_breaking({"id": "rec-0001"}, None) is None

    events = sample_events(40, 3, 1.0, samples_path=samples_file, schema_path=permissive)

    broken = [event for event in events if event.broken == "schema"]
    assert broken
    for event in broken:
        assert event.expected_code == "InvalidInput"
        body = json.loads(event.body())
        assert isinstance(body, list) and body[0]["event_id"] == event.event_id


def test_events_are_keyed_by_the_producers_key_field_or_else_by_their_id():
    """The FIFO group or Kinesis partition key: the stage's PARTITION_KEY_FIELD, else the answer's field."""
    event = SampleEvent("evt-1", {"account": "a-7", "id": "rec-0001"})
    assert event_key(event, "account") == "a-7"
    assert event_key(event, "") == "evt-1"
    assert event_key(event, "region") == "evt-1"
    assert producer_key_field({"PARTITION_KEY_FIELD": "account"}) == "account"
    assert producer_key_field({}) == PARTITION_KEY_FIELD != ""


def test_progress_without_a_terminal_is_plain_lines():
    """Logs and CI capture stderr: no carriage returns or escape codes there."""
    stream = io.StringIO()
    progress = PipelineProgress(total=20, stream=stream)
    progress.show(sent=10, accounted=0)
    progress.show(sent=20, accounted=20)
    progress.close()

    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "20/20 accounted for" in lines[-1]
    assert "\r" not in stream.getvalue() and "\x1b" not in stream.getvalue()


def test_the_summary_table_has_a_row_for_every_figure():
    """`make local` users read the table; each figure they are promised must be on it."""
    summary = PipelineSummary(
        sent=3, predicted=2, dead_lettered=1, duplicates=0, lost=0, latency_p50_ms=12.0, latency_p95_ms=30.0,
        latency_p99_ms=31.0, predictions_per_second=40.0, elapsed_seconds=0.05, invocations=1, failed_batches=0,
    )  # fmt: skip
    rows = [line.split("  ")[0] for line in summary.table().splitlines()]
    for figure in ("sent", "predicted", "dead-lettered", "duplicates", "lost", "latency p50", "latency p95",
                   "latency p99", "throughput"):  # fmt: skip
        assert figure in rows
