# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The sample events `make events` writes from the samples: Lambda-shaped for this source, read by the handler.

Written here from the echo model's samples (the fixture sample_events_dir), since these tests hold
whatever model/ holds.
"""

import json

from chalice.test import Client

from chalicelib.template_runtime.feature_events import is_envelope
from template_tools import sample_event_files
from template_tools.sample_event_files import FEATURE_EVENTS, MALFORMED_RECORD
from template_tools.source import lambda_records, record_body
from template_tools.stage import PROJECT_DIR

from .echo_inputs import ECHO_INPUT_SCHEMA, expected_output
from .lambda_events import message_id

HANDLER = "handle_feature_events"


def load_event(directory, name: str) -> dict:
    return json.loads((directory / name).read_text(encoding="utf-8"))


def invoke(chalice_app, event: dict) -> dict:
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        return client.lambda_.invoke(HANDLER, event).payload


def model_input(body: str) -> dict:
    """The model input a well-formed body carries: the body itself, or its envelope's features."""
    document = json.loads(body)
    return document["features"] if is_envelope(document) else document


def dead_letter_reasons(letters: list[dict]) -> dict[str, str]:
    """Each dead-lettered record's id and its error code."""
    attributes = [letter["MessageAttributes"] for letter in letters]
    return {names["source_message_id"]["StringValue"]: names["error_code"]["StringValue"] for names in attributes}


def shape(value):
    """A record's keys, nested records' keys included, without their values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    return type(value).__name__


def test_every_feature_event_is_predicted_in_both_forms(pipeline, chalice_app, sample_events_dir, model_samples):
    """A bare model input and two producer envelopes, each holding one of the samples, all predicted."""
    event = load_event(sample_events_dir, FEATURE_EVENTS)
    bodies = [record_body(record) for record in event["Records"]]
    assert [is_envelope(json.loads(body)) for body in bodies] == [False, True, True]
    assert all(model_input(body) in model_samples for body in bodies)
    assert invoke(chalice_app, event) == {"batchItemFailures": []}
    predicted = {envelope["message_id"]: envelope["prediction"] for envelope in pipeline.predictions()}
    assert predicted == {
        message_id(record): expected_output(model_input(body))
        for record, body in zip(event["Records"], bodies, strict=True)
    }
    assert pipeline.dead_letters() == []


def test_the_malformed_records_are_dead_lettered_for_their_own_reasons(pipeline, chalice_app, sample_events_dir):
    """The well-formed record is predicted; the cut-off one is InvalidJson, the schema-breaking one SchemaViolation."""
    event = load_event(sample_events_dir, MALFORMED_RECORD)
    well_formed, cut_off, breaking = (message_id(record) for record in event["Records"])
    assert invoke(chalice_app, event) == {"batchItemFailures": []}
    assert [envelope["message_id"] for envelope in pipeline.predictions()] == [well_formed]
    assert dead_letter_reasons(pipeline.dead_letters()) == {cut_off: "InvalidJson", breaking: "SchemaViolation"}


def test_the_records_have_the_shape_the_local_trigger_gives_the_handler(sample_events_dir):
    """Every record has exactly the keys (and types of values) of the source's own Lambda record builder."""
    for name in (FEATURE_EVENTS, MALFORMED_RECORD):
        event = load_event(sample_events_dir, name)
        assert list(event) == ["Records"]
        assert len(event["Records"]) == 3
        for record in event["Records"]:
            (built,) = lambda_records(["{}"], ["key"], record["eventSourceARN"], record["awsRegion"])
            assert shape(record) == shape(built), name
        assert len({message_id(record) for record in event["Records"]}) == 3, name


def test_writing_again_from_the_same_samples_gives_identical_files(samples_file, tmp_path):
    """Ids, timestamps and sequence numbers come from the seed, so regenerating changes nothing; another seed does."""
    written = {}
    for run, seed in (("first", "7"), ("again", "7"), ("other", "8")):
        out = tmp_path / run
        arguments = ["--samples", str(samples_file), "--schema", str(ECHO_INPUT_SCHEMA), "--out", str(out)]
        assert sample_event_files.main([*arguments, "--seed", seed]) == 0
        written[run] = {path.name: path.read_bytes() for path in sorted(out.iterdir())}
    assert set(written["first"]) == {FEATURE_EVENTS, MALFORMED_RECORD}
    assert written["again"] == written["first"]
    assert written["other"][FEATURE_EVENTS] != written["first"][FEATURE_EVENTS]


def test_a_missing_samples_file_is_named_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "events"
    assert sample_event_files.main(["--samples", str(tmp_path / "absent.jsonl"), "--out", str(out)]) == 2
    assert "absent.jsonl does not exist" in capsys.readouterr().err
    assert not out.exists()
