# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make local` end to end: every event sent comes out as a prediction or a dead letter."""

import io
{%- if cookiecutter.output_destination == "dynamodb" %}
from collections import Counter
{%- endif %}

import pytest

from template_tools.local_pipeline import (
    EXERCISE_TRIGGER_LIMITS,
    ModelMissingError,
    PipelineProgress,
    PipelineSummary,
{%- if cookiecutter.output_destination == "dynamodb" %}
    event_key,
{%- endif %}
    run_local_pipeline,
    sample_events,
)

COUNT = 60
SEED = 11
# High enough that this seed breaks a few of the 60 events, of both kinds.
MALFORMED_RATE = 0.1
ENVELOPE_KEYS = {
    "schema_version", "prediction", "message_id", "event_id", "endpoint_name", "endpoint_variant",
    "model_version", "event_time", "prediction_time", "latency_ms", "endpoint_latency_ms",
}  # fmt: skip


@pytest.mark.slow
def test_every_event_is_predicted_or_dead_lettered_and_none_is_lost(model_dir):
    """The pipeline's promise: nothing a producer sends disappears without a trace."""
    events = sample_events(COUNT, SEED, MALFORMED_RATE)
    not_json = [event for event in events if event.features is None]
    rejected_by_model = [event for event in events if event.features is not None and event.features["k"] == 0]
    assert not_json and rejected_by_model, "the seed should break events of both kinds"

    summary = run_local_pipeline(
        COUNT,
        SEED,
        MALFORMED_RATE,
        model_dir=model_dir,
        progress=None,
        trigger_limits=EXERCISE_TRIGGER_LIMITS,
    )

    assert summary.lost == 0
    assert summary.sent == COUNT
{%- if cookiecutter.output_destination == "dynamodb" %}
    # The table keeps each key's newest prediction: an event of a key whose newer (or same-millisecond)
    # prediction was written first is superseded, an outcome the ledger checks against the table.
    assert summary.predicted + summary.dead_lettered + summary.superseded == summary.sent
    repeated_keys = Counter(event_key(event) for event in events if event.features is not None)
    assert summary.superseded <= sum(count - 1 for count in repeated_keys.values()), "only a repeated key's events"
{%- else %}
    assert summary.predicted + summary.dead_lettered == summary.sent
{%- endif %}
    assert summary.dead_lettered == len(not_json) + len(rejected_by_model)
    assert all(set(envelope) == ENVELOPE_KEYS for envelope in summary.predictions)
    assert all(envelope["prediction"]["items"] for envelope in summary.predictions)
    # A dead letter carries the body exactly as it was sent.
    assert {event.body() for event in not_json} <= {message["Body"] for message in summary.dead_letters}


def test_a_missing_model_says_to_run_make_train(tmp_path):
    """Local mode needs the trained model; the error must say how to get it."""
    with pytest.raises(ModelMissingError, match="make train"):
        run_local_pipeline(10, model_dir=tmp_path, progress=None)


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
