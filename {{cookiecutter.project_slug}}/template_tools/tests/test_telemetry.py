# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""What operators see: JSON log lines tied to the request and the record, no personal data, EMF metrics."""

import json
import logging
import random
import statistics

import pytest
from chalice.test import Client

from chalicelib.template_runtime.telemetry import (
    MAX_VALUES_PER_METRIC,
    JsonLogFormatter,
    PayloadSampler,
    emf_line,
    representative_values,
)
from template_tools.stage import PROJECT_DIR, packaged_environment, patched_environ

from .echo_inputs import broken_json_body, echo_body, echo_input, expected_output
from .lambda_events import lambda_event, message_id

HANDLER = "handle_feature_events"
FORMATTER = JsonLogFormatter()


def run_batch(chalice_app, bodies: list[str]) -> list[dict]:
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        event = lambda_event(client, bodies)
        client.lambda_.invoke(HANDLER, event)
    return event["Records"]


def json_lines(caplog) -> list[dict]:
    """The handler's log records as CloudWatch would store them: one JSON object each."""
    return [json.loads(FORMATTER.format(record)) for record in caplog.records if record.name.startswith("chalicelib")]


def metric_documents(capsys) -> list[dict]:
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    return [json.loads(line) for line in lines]


def processor_with_sample_rate(chalice_app, stage, rate: str) -> None:
    """Build the handler's processor with this payload sample rate; the next invocations reuse it.

    The test client sets the stage's own PAYLOAD_LOG_SAMPLE_RATE on every call, so the rate is
    set here, where the processor is created.
    """
    with patched_environ({**packaged_environment(stage), "PAYLOAD_LOG_SAMPLE_RATE": rate}):
        chalice_app.batch_processor()


@pytest.fixture
def batch(pipeline, chalice_app, stage, caplog, capsys):
    """Four good records and one that is not JSON, through the handler, with logs and stdout captured."""
    caplog.set_level(logging.INFO)
    # Rate 0, the template's default, whatever this project chose.
    processor_with_sample_rate(chalice_app, stage, "0")
    bodies = [echo_body(n) for n in range(4)] + [broken_json_body(9)]
    records = run_batch(chalice_app, bodies)
    return records, json_lines(caplog), metric_documents(capsys)


def test_every_line_is_json_with_the_request_id_and_record_lines_name_their_record(batch):
    """One search by request id or message id must find everything about a batch or an event."""
    records, lines, _ = batch
    assert lines
    request_ids = {line["request_id"] for line in lines}
    assert len(request_ids) == 1 and None not in request_ids
    by_event = {}
    for line in lines:
        by_event.setdefault(line["event"], []).append(line)
    assert {line["message_id"] for line in by_event["predicted"]} == {message_id(r) for r in records[:4]}
    (dead,) = by_event["dead_lettered"]
    assert (dead["message_id"], dead["error_code"]) == (message_id(records[4]), "InvalidJson")
    (summary,) = by_event["batch_processed"]
    assert (summary["records_in"], summary["predicted"], summary["dead_lettered"], summary["retried"]) == (5, 4, 1, 0)


def test_no_feature_value_or_prediction_is_logged_at_a_sample_rate_of_zero(batch):
    """Features may be personal data: at the default sample rate of 0, only ids and timings appear."""
    _, lines, _ = batch
    text = "\n".join(json.dumps(line) for line in lines)
    assert "rec-000" not in text and '"value' not in text
    assert all("features" not in line and "prediction" not in line for line in lines)


def test_a_sample_rate_of_one_logs_every_prediction_with_its_features(pipeline, chalice_app, stage, caplog):
    """Payload logging is an explicit choice, and when chosen it shows what the model saw and said."""
    caplog.set_level(logging.INFO)
    processor_with_sample_rate(chalice_app, stage, "1")
    run_batch(chalice_app, [echo_body(7)])
    (predicted,) = [line for line in json_lines(caplog) if line["event"] == "predicted"]
    assert predicted["features"] == echo_input(7)
    assert predicted["prediction"] == expected_output(echo_input(7))


def test_each_batch_emits_one_emf_document_that_cloudwatch_can_read(batch, stage):
    """The metrics exist only if the EMF document is well formed: namespace, units, values."""
    _, _, documents = batch
    (document,) = documents
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == stage.environment_variables["METRICS_NAMESPACE"]
    assert directive["Dimensions"] == [["EndpointName"]]
    assert document["EndpointName"] == stage.environment_variables["ENDPOINT_NAME"]
    units = {metric["Name"]: metric["Unit"] for metric in directive["Metrics"]}
    assert units == {
        "RecordsIn": "Count",
        "Predicted": "Count",
        "DeadLettered": "Count",
        "Retried": "Count",
        "BatchSize": "Count",
        "EndpointLatency": "Milliseconds",
        "EventAge": "Milliseconds",
    }
    assert (document["RecordsIn"], document["Predicted"], document["DeadLettered"], document["Retried"]) == (5, 4, 1, 0)
    assert len(document["EndpointLatency"]) == 4 and all(value > 0 for value in document["EndpointLatency"])
    assert len(document["EventAge"]) == 4 and all(value >= 0 for value in document["EventAge"])


def test_a_metric_without_values_is_left_out_rather_than_sent_empty():
    """CloudWatch rejects an EMF document whose metric has no value; a batch with no prediction has none."""
    document = emf_line("ns", {"EndpointName": "e"}, {"Predicted": 0}, {"EndpointLatency": []}, timestamp_ms=1)
    names = [metric["Name"] for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == ["Predicted"]
    assert "EndpointLatency" not in document


def test_a_large_batch_reports_values_spread_over_all_its_records():
    """EMF takes 100 values a metric: they must describe the whole batch, not its first records."""
    samples = [float(value) + 0.04 for value in reversed(range(1000))]  # slowest records first
    values = representative_values(samples)
    assert len(values) == MAX_VALUES_PER_METRIC
    assert (min(values), max(values)) == (0.0, 999.0)
    assert 480 <= statistics.median(values) <= 520
    assert representative_values([12.345, 3.0]) == [12.3, 3.0], "small batches keep every value, rounded"


@pytest.mark.parametrize(("rate", "low", "high"), [(0, 0, 0), (1, 1000, 1000), (0.1, 60, 140)])
def test_the_payload_sampler_admits_about_its_rate(rate, low, high):
    """The sample rate bounds how much personal data reaches the logs."""
    sampler = PayloadSampler(rate, random.Random(3))
    admitted = sum(sampler.admits() for _ in range(1000))
    assert low <= admitted <= high


def test_a_sample_rate_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="from 0 to 1"):
        PayloadSampler(1.5)
