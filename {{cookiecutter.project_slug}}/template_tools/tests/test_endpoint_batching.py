# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""How the handler packs records into InvokeEndpoint calls and maps the answers back.

The benchmark shows what batching buys; these tests pin down that it never mixes records up:
calls respect both the records-per-call cap and the payload limit, order is kept, each answer
goes back to its own record, and a record the model rejects inside a batch call fails alone.
Nothing here is timed.
"""

import json

import pytest

from chalicelib.template_runtime.aws_limits import INVOKE_ENDPOINT_MAX_REQUEST_BYTES
from chalicelib.template_runtime.deadline import Deadline
from chalicelib.template_runtime.endpoint import EndpointClients, EndpointInvoker, PayloadCodec, Prediction
from chalicelib.template_runtime.failures import RecordFailure
from chalicelib.template_runtime.feature_events import FeatureEvent

from .echo_inputs import echo_input, expected_output, model_rejected_input

CONTENT_TYPES = ["application/json", "application/jsonlines"]
NO_DEADLINE = Deadline(None, 0)


def feature_event(number: int, features: dict | None = None) -> FeatureEvent:
    features = features or echo_input(number)
    return FeatureEvent(
        message_id=f"msg-{number}",
        body=json.dumps(features),
        features=features,
        event_id=f"msg-{number}",
        event_time=None,
        sent_timestamp_ms=None,
        receive_count=1,
        failure_id=f"msg-{number}",
    )


def invoker(
    executor, content_type="application/json", records_per_call=100, payload_limit=INVOKE_ENDPOINT_MAX_REQUEST_BYTES
):
    # The clients are created inside the test, after the endpoint fixture has pointed boto3 at it.
    return EndpointInvoker(
        clients=EndpointClients(read_timeout_seconds=10),
        endpoint_name="model-under-test",
        codec=PayloadCodec(content_type),
        records_per_call=records_per_call,
        payload_limit=payload_limit,
        executor=executor,
    )


@pytest.fixture
def local_model(aws_credentials, endpoint):
    return endpoint


def test_records_are_split_into_calls_of_at_most_the_cap_in_order(aws_credentials, executor):
    events = [feature_event(n) for n in range(25)]
    calls, too_large = invoker(executor, records_per_call=10).plan_calls(events)
    assert [call.positions for call in calls] == [tuple(range(0, 10)), tuple(range(10, 20)), tuple(range(20, 25))]
    assert too_large == {}


def test_per_record_mode_makes_one_call_per_record_each_carrying_the_record_itself(aws_credentials, executor):
    events = [feature_event(n) for n in range(3)]
    calls, _ = invoker(executor, records_per_call=1).plan_calls(events)
    assert [call.positions for call in calls] == [(0,), (1,), (2,)]
    assert [json.loads(call.body) for call in calls] == [event.features for event in events]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_a_call_is_closed_before_its_body_would_pass_the_payload_limit(aws_credentials, executor, content_type):
    events = [feature_event(n) for n in range(10)]
    codec = PayloadCodec(content_type)
    three_records = codec.request_size([len(codec.encode_record(event.features)) for event in events[:3]])
    calls, too_large = invoker(executor, content_type, payload_limit=three_records).plan_calls(events)
    assert [len(call.positions) for call in calls] == [3, 3, 3, 1]
    assert [position for call in calls for position in call.positions] == list(range(10))
    assert all(len(call.body) <= three_records for call in calls)
    assert too_large == {}


def test_a_record_too_large_for_any_call_fails_alone_and_the_rest_are_planned(aws_credentials, executor):
    events = [feature_event(0), feature_event(1, echo_input(1, padding="x" * 5000)), feature_event(2)]
    limit = 2000
    calls, too_large = invoker(executor, payload_limit=limit).plan_calls(events)
    assert [call.positions for call in calls] == [(0, 2)]
    assert set(too_large) == {1}
    assert too_large[1].code == "PayloadTooLarge" and too_large[1].permanent


def test_the_json_codec_sends_one_record_as_itself_and_a_batch_as_instances():
    codec = PayloadCodec("application/json")
    one, two = b'{"a":1}', b'{"b":2}'
    assert codec.join([one]) == one
    assert json.loads(codec.join([one, two])) == {"instances": [{"a": 1}, {"b": 2}]}
    assert codec.request_size([len(one), len(two)]) == len(codec.join([one, two]))
    assert codec.split(b'{"predictions": [1, 2]}', 2) == [1, 2]
    assert codec.split(b'{"x": 1}', 1) == [{"x": 1}]


def test_the_jsonlines_codec_sends_and_reads_one_record_per_line():
    codec = PayloadCodec("application/jsonlines")
    one, two = b'{"a":1}', b'{"b":2}'
    assert codec.join([one, two]) == b'{"a":1}\n{"b":2}'
    assert codec.request_size([len(one), len(two)]) == len(codec.join([one, two]))
    assert codec.split(b'{"x":1}\n{"x":2}\n', 2) == [{"x": 1}, {"x": 2}]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_an_answer_with_the_wrong_number_of_predictions_is_refused(content_type):
    codec = PayloadCodec(content_type)
    answer = b'{"predictions": [1]}' if content_type == "application/json" else b"1"
    with pytest.raises(ValueError, match="1 predictions for 2 records"):
        codec.split(answer, 2)


def test_an_unknown_content_type_is_refused():
    with pytest.raises(ValueError, match="unsupported endpoint content type"):
        PayloadCodec("text/csv")


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_each_prediction_comes_back_to_its_own_record_in_order(local_model, executor, content_type):
    events = [feature_event(n) for n in range(12)]
    outcomes = invoker(executor, content_type, records_per_call=5).predict(events, NO_DEADLINE)
    assert all(isinstance(outcome, Prediction) for outcome in outcomes)
    assert [outcome.output for outcome in outcomes] == [expected_output(event.features) for event in events]
    assert {outcome.variant for outcome in outcomes} == {"AllTraffic"}
    assert local_model.invocations == 3


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_a_record_the_model_rejects_in_a_batch_call_fails_alone(local_model, executor, content_type):
    """The batch call fails as a whole; each of its records is retried alone, so only the bad one fails."""
    events = [feature_event(n) for n in range(6)]
    events[3] = feature_event(3, model_rejected_input(3))
    outcomes = invoker(executor, content_type, records_per_call=100).predict(events, NO_DEADLINE)
    failure = outcomes[3]
    assert isinstance(failure, RecordFailure)
    assert failure.code == "ModelError" and failure.permanent
    assert "'value'" in failure.reason
    others = [outcome for position, outcome in enumerate(outcomes) if position != 3]
    assert all(isinstance(outcome, Prediction) for outcome in others)
    assert [outcome.output for outcome in others] == [expected_output(echo_input(n)) for n in (0, 1, 2, 4, 5)]
    # One batch call, then one call per record of the failed batch.
    assert local_model.invocations == 1 + len(events)


def test_a_failing_batch_call_only_isolates_its_own_records(local_model, executor):
    events = [feature_event(n) for n in range(6)]
    events[4] = feature_event(4, model_rejected_input(4))
    outcomes = invoker(executor, records_per_call=3).predict(events, NO_DEADLINE)
    assert [type(outcome).__name__ for outcome in outcomes] == ["Prediction"] * 4 + ["RecordFailure", "Prediction"]
    # Two batch calls; only the second, failed one is split into single calls.
    assert local_model.invocations == 2 + 3
