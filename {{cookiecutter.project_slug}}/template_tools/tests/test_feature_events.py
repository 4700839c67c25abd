# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Reading delivered records into feature events: both body forms, and every way a body is refused.

The records here come through the project's own event source (chalicelib/source.py), so the
same tests hold whichever source the project reads.
"""

import json

import pytest

from chalicelib.template_runtime.feature_events import Delivery, FeatureEvent, RejectedRecord, parse_record

from .echo_inputs import echo_input

MODEL_INPUT = echo_input(1)


def delivered(body: str, message_id: str = "m-1", receive_count: int = 1) -> Delivery:
    return Delivery(
        message_id=message_id,
        failure_id=message_id,
        body=body,
        receive_count=receive_count,
        sent_timestamp_ms=1764064800000,
    )


def test_a_bare_body_is_the_model_input_and_its_message_id_is_the_event_id():
    """Producers that send plain model input need no envelope."""
    event = parse_record(delivered(json.dumps(MODEL_INPUT)), max_record_bytes=1024)
    assert isinstance(event, FeatureEvent)
    assert event.features == MODEL_INPUT
    assert event.event_id == "m-1"
    assert event.event_time is None
    assert event.sent_timestamp_ms == 1764064800000


def test_an_envelope_carries_event_id_and_event_time_around_the_features():
    """The envelope lets producers correlate predictions with their own event ids."""
    body = json.dumps({"event_id": "e-9", "event_time": "2026-11-25T10:00:00.000Z", "features": MODEL_INPUT})
    event = parse_record(delivered(body, receive_count=3), max_record_bytes=1024)
    assert isinstance(event, FeatureEvent)
    assert (event.features, event.event_id, event.event_time) == (MODEL_INPUT, "e-9", "2026-11-25T10:00:00.000Z")
    assert event.receive_count == 3
    assert event.body == body


def test_a_model_input_with_a_features_field_among_others_is_not_mistaken_for_an_envelope():
    """Only a body made of envelope keys alone is unwrapped."""
    body = {"features": {"a": 1}, "id": "rec-1"}
    event = parse_record(delivered(json.dumps(body)), max_record_bytes=1024)
    assert isinstance(event, FeatureEvent)
    assert event.features == body


@pytest.mark.parametrize(
    ("body", "code", "reason_part"),
    [
        ("not json at all", "InvalidJson", "not JSON"),
        ("[1, 2]", "InvalidInput", "list"),
        (json.dumps({"features": [1]}), "InvalidEnvelope", "'features'"),
        (json.dumps({"features": {}, "event_id": 7}), "InvalidEnvelope", "'event_id'"),
        (json.dumps({"features": {}, "event_time": "yesterday"}), "InvalidEnvelope", "'event_time'"),
        ("x" * 2000, "RecordTooLarge", "2000 bytes"),
        ('{"event_id": "e-\\ud800", "features": {}}', "InvalidJson", "surrogate"),
        ('{"features": {"name": "\\uDFFF"}}', "InvalidJson", "surrogate"),
        ('{"\\ud83d": 1}', "InvalidJson", "surrogate"),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "features-not-object",
        "event-id-not-string",
        "bad-event-time",
        "oversize",
        "lone-surrogate-in-event-id",
        "lone-surrogate-in-features",
        "lone-surrogate-in-a-name",
    ],
)
def test_a_bad_body_is_rejected_permanently_with_its_reason_and_kept_untouched(body, code, reason_part):
    """A record that can never be predicted must say why, and keep the exact body for the dead-letter queue."""
    rejected = parse_record(delivered(body, receive_count=2), max_record_bytes=1024)
    assert isinstance(rejected, RejectedRecord)
    assert rejected.failure.code == code
    assert rejected.failure.permanent
    assert reason_part in rejected.failure.reason
    assert rejected.body == body
    assert rejected.receive_count == 2


def test_a_character_escaped_as_a_whole_surrogate_pair_is_read_as_that_character():
    """Only half a pair is refused: a pair is how JSON escapes a character beyond the BMP."""
    body = json.dumps({"event_id": "e-\U0001f600", "features": MODEL_INPUT})
    assert "\\ud83d\\ude00" in body
    event = parse_record(delivered(body), max_record_bytes=1024)
    assert isinstance(event, FeatureEvent)
    assert event.event_id == "e-\U0001f600"


def test_bytes_the_source_could_not_read_as_text_are_rejected_with_their_reason():
    """A record whose bytes are not text still reaches the dead-letter queue, as it arrived."""
    record = Delivery("m-2", "m-2", "//79", 1, None, encoding_problem="record data is not UTF-8 text")
    rejected = parse_record(record, max_record_bytes=1024)
    assert isinstance(rejected, RejectedRecord)
    assert (rejected.failure.code, rejected.body) == ("InvalidEncoding", "//79")
