# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make bench` runs end to end and writes the documented results; nothing here asserts a timing.

The benchmark runs once, at tiny sizes with no endpoint latency, against a copy of the project
with the echo model and its inputs. Its results.json is checked for the keys CI keeps as history, their types,
and the API call counts that do not depend on timing.
"""

import contextlib
import importlib.util
import io
import json
import shutil

import pytest

from template_tools.benchmark import main
from template_tools.benchmark_report import HANDLER_LABELS
from template_tools.stage import PROJECT_DIR

from .echo_inputs import echo_input

HANDLERS = list(HANDLER_LABELS)
CAN_PLOT = importlib.util.find_spec("matplotlib") is not None

pytestmark = pytest.mark.slow
{%- if cookiecutter.output_destination == "dynamodb" %}
# A conditional write cannot be batched: the handler makes one PutItem per record, as the naive
# handler does (unconditionally).
PUBLISH_PER_1000 = 1000
{%- else %}
# One {{ {"sqs": "SendMessageBatch", "sns": "PublishBatch", "kinesis": "PutRecords"}.get(cookiecutter.output_destination, "") }} per batch of 10 records.
PUBLISH_PER_1000 = 100
{%- endif %}
# SQS and SNS bill a publish call per 64 KiB chunk: a batch of 10 small envelopes is one request.
PUBLISH_BILLED_PER_CALL = {{ "True" if cookiecutter.output_destination in ("sqs", "sns") else "False" }}
# The naive handler looks the predictions queue's URL up before each SendMessage; other
# destinations need no lookup per record.
NAIVE_LOOKUPS_PER_1000 = {{ 1000 if cookiecutter.output_destination == "sqs" else 0 }}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, model_dir):
    """Run the benchmark once for the module; yield (results.json as a dict, printed output, out dir)."""
    project = tmp_path_factory.mktemp("project")
    for name in ("app.py", "requirements.txt"):
        shutil.copy2(PROJECT_DIR / name, project / name)
    for name in ("chalicelib", ".chalice"):
        shutil.copytree(PROJECT_DIR / name, project / name, ignore=shutil.ignore_patterns("__pycache__", "deploy*"))
    shutil.copytree(model_dir, project / "model")
    # The echo model's inputs, given as a team gives its own events (FILE=).
    events = tmp_path_factory.mktemp("events") / "events.jsonl"
    events.write_text("".join(json.dumps(echo_input(number)) + "\n" for number in range(200)), encoding="utf-8")
    out = tmp_path_factory.mktemp("bench")
    arguments = [
        "--latency-ms", "0",
        "--out", str(out),
        "--project-dir", str(project),
        "--file", str(events),
        "--batch-sizes", "1,10",
        "--max-repeats", "2",
        "--cpu-invocations", "1",
        "--cold-start-repetitions", "1",
        "--pipeline-messages", "20",
        "--ceiling-messages", "20",
        "--capacity-records", "20",
    ]  # fmt: skip
    with pytest.MonkeyPatch.context() as monkeypatch:
        # Fake credentials, so nothing can reach a real AWS account.
        for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS"):
            monkeypatch.delenv(variable, raising=False)
        for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            monkeypatch.setenv(variable, "testing")
        output = _run(arguments if CAN_PLOT else [*arguments, "--no-plot"])
    yield json.loads((out / "results.json").read_text()), output, out


def _run(arguments):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(arguments, stream=None) == 0
    return printed.getvalue()


def test_every_documented_figure_is_written_with_a_sensible_type(bench_run):
    results, _, out = bench_run
    # With no endpoint latency a multiple is meaningless: null, while the milliseconds are kept.
    assert results["batch10_latency_multiple"] == dict.fromkeys(HANDLERS)
    assert all(results["batch10_latency_ms"][name] > 0 for name in HANDLERS)
    assert set(results["calls_per_1000"]) == set(HANDLERS)
    assert all(set(calls) == {"invoke", "publish", "other"} for calls in results["calls_per_1000"].values())
    assert isinstance(results["cpu_ms_per_record"], float) and results["cpu_ms_per_record"] > 0
    assert isinstance(results["import_ratio"], float) and results["import_ratio"] > 0
    assert isinstance(results["package_bytes"], int) and results["package_bytes"] > 0
    assert isinstance(results["local_throughput_fraction"], float) and results["local_throughput_fraction"] > 0
    assert results["local_throughput"]["pipeline_lost"] == 0
    assert set(results["targets_met"]) >= {"batch10_latency_multiple", "cpu_share_of_naive", "package_bytes"}
    assert results["cpu_share_of_naive"]["batch"] > 0 and results["cpu_share_of_naive"]["per_record"] > 0
    low, high = results["import_ratio_spread"]
    assert low <= results["import_ratio"] <= high
    assert (out / "latency.png").exists() == CAN_PLOT


def test_the_table_names_every_handler_and_the_targets(bench_run):
    _, printed, _ = bench_run
    for label in HANDLER_LABELS.values():
        assert label in printed
    assert "wall per batch of 10" in printed and "target" in printed and "How these figures are made" in printed
    # The handlers' metric lines go to the handler log, not between the table's lines.
    assert '"_aws"' not in printed


def test_the_handlers_log_and_metric_lines_go_to_a_file_beside_the_results(bench_run):
    _, printed, out = bench_run
    handler_log = (out / "handler.log").read_text()
    assert '"CloudWatchMetrics"' in handler_log
    assert f"handler log: {out / 'handler.log'}" in printed


def test_the_naive_baseline_makes_one_invoke_and_one_publish_call_per_record(bench_run):
    """The foil must be what its docstring says: {{ {"sqs": "InvokeEndpoint, GetQueueUrl and SendMessage per record", "sns": "InvokeEndpoint and Publish per record", "kinesis": "InvokeEndpoint and PutRecord per record", "dynamodb": "InvokeEndpoint and PutItem per record"}[cookiecutter.output_destination] }}."""
    results, _, _ = bench_run
    naive = results["calls_per_1000"]["naive"]
    assert naive["invoke"] == naive["publish"] == 1000
    # Its only other calls are the queue URL lookups (SQS only), one per record.
    assert naive["other"] == results["get_queue_url_per_1000"]["naive"] == NAIVE_LOOKUPS_PER_1000


def test_the_handler_batches_its_calls_and_looks_nothing_up_per_record(bench_run):
    """Counts at 10 records per batch: batch mode one InvokeEndpoint per batch, per-record mode one per
    record; both publish {{ "with one PutItem per record" if cookiecutter.output_destination == "dynamodb" else "one batch call per batch" }}."""
    results, _, _ = bench_run
    assert results["calls_per_1000"]["batch"] == {"invoke": 100, "publish": PUBLISH_PER_1000, "other": 0}
    assert results["calls_per_1000"]["per_record"] == {"invoke": 1000, "publish": PUBLISH_PER_1000, "other": 0}
    assert results["get_queue_url_per_1000"]["batch"] == results["get_queue_url_per_1000"]["per_record"] == 0


def test_batch_mode_makes_fewer_calls_in_all_than_the_naive_baseline(bench_run):
    """What the comparison is for, whatever the destination's publishing API."""
    results, _, _ = bench_run
    calls = results["calls_per_1000"]
    assert sum(calls["batch"].values()) < sum(calls["naive"].values())
    assert calls["batch"]["invoke"] < calls["naive"]["invoke"]


def test_the_cost_table_prices_every_handler_from_this_runs_counts(bench_run):
    """cost_per_million: every row for every handler, the total their sum, and the counts the table
    prices are the ones this run measured."""
    results, printed, _ = bench_run
    cost = results["cost_per_million"]
    assert cost["batch_size"] == {{ cookiecutter.batch_size }} and cost["memory_mb"] == {{ cookiecutter.lambda_memory_mb }}
    for handler in HANDLERS:
        items = [row[handler] for row in cost["rows"].values()]
        assert all(item["usd"] >= 0 and item["quantity"] >= 0 for item in items)
        assert cost["total"][handler] == pytest.approx(sum(item["usd"] for item in items), abs=1e-5)
    # A million predictions in batches of the trigger's size.
    assert cost["rows"]["lambda_requests"]["batch"]["quantity"] == 1_000_000 / {{ cookiecutter.batch_size }}
    # The handler's metric lines are in the log; the naive handler writes none, only Lambda's own lines.
    assert cost["rows"]["log_bytes"]["batch"]["quantity"] > cost["rows"]["log_bytes"]["naive"]["quantity"]
    assert cost["rows"]["dead_letter_requests"]["batch"]["quantity"] == 0
    if PUBLISH_BILLED_PER_CALL and {{ cookiecutter.batch_size }} == 10:
        calls = results["calls_per_1000"]
        for handler in HANDLERS:
            assert cost["rows"]["destination_requests"][handler]["quantity"] == calls[handler]["publish"] * 1000
    assert "Cost per million predictions" in printed and "total, endpoint excluded" in printed


def test_the_endpoint_capacity_compares_batched_calls_with_one_record_a_call(bench_run):
    results, printed, _ = bench_run
    capacity = results["endpoint_capacity"]
    assert capacity["batch"]["records_per_call"] == 100 and capacity["per_record"]["records_per_call"] == 1
    assert capacity["batch"]["predictions_per_second"] > 0 and capacity["per_record"]["predictions_per_second"] > 0
    assert capacity["instance_type"] == "{{ cookiecutter.endpoint_instance_type }}"
    assert "Endpoint capacity" in printed
