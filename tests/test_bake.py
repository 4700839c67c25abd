"""Bake a curated table of option combinations and check what each generated project contains."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from baking import bake_into, default_answers, ruff_executable

# Each combination is a set of answers changed from the defaults; the test id lists them as
# `key:value`. Add a row when an option gains a value whose files or code differ.
COMBINATIONS: list[dict[str, str]] = [
    {},
    {
        "output_destination": "sns",
        "endpoint_call_mode": "per-record",
        "endpoint_content_type": "application/jsonlines",
        "lambda_runtime": "python3.13",
    },
    {
        "output_destination": "kinesis",
        "batch_size": "10000",
        "maximum_batching_window_seconds": "300",
        "maximum_concurrency": "1000",
        "lambda_timeout_seconds": "900",
        "lambda_memory_mb": "10240",
        "records_per_endpoint_call": "500",
        "endpoint_concurrency": "64",
        "endpoint_kind": "serverless",
        "serverless_memory_mb": "6144",
        "payload_log_sample_rate": "0.01",
        "model_framework": "huggingface",
    },
    {
        # The longest slug Chalice's Lambda function name allows, and names unlike the defaults.
        "output_destination": "dynamodb",
        "project_name": "Churn Scores For Every Subscription Tier",
        "project_slug": "churn-scores-for-every-subscription-t",
        "package_name": "churn_tools",
        "endpoint_name": "churn-xgb-v2",
        "model_version": "2026.11-rc1+build.7",
        "aws_region": "us-west-2",
        "features_source_name": "Clicks_In",
        "predictions_destination_name": "churn.scores",
        "dead_letter_queue_name": "churn_scores_dlq",
        "max_receive_count": "1000",
        "model_framework": "xgboost",
    },
    {"input_source": "sqs-fifo"},
    {
        "input_source": "sqs-fifo",
        "output_destination": "sns",
        "xray_tracing": "active",
        "model_framework": "pytorch",
    },
    {"input_source": "sqs-fifo", "output_destination": "kinesis"},
    {"input_source": "sqs-fifo", "output_destination": "dynamodb", "read_api_auth": "none"},
    {"input_source": "kinesis"},
    {
        "input_source": "kinesis",
        "output_destination": "sns",
        "model_framework": "custom",
        "model_image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recs-server@sha256:" + "0f" * 32,
    },
    {"input_source": "kinesis", "output_destination": "kinesis", "features_source_name": "clicks.v2"},
    {
        "input_source": "kinesis",
        "output_destination": "dynamodb",
        "batch_size": "500",
        "xray_tracing": "active",
    },
]

# Every input source with every destination appears above at least once.
assert {(c.get("input_source", "sqs"), c.get("output_destination", "sqs")) for c in COMBINATIONS} == {
    (source, destination)
    for source in ("sqs", "sqs-fifo", "kinesis")
    for destination in ("sqs", "sns", "kinesis", "dynamodb")
}


def combination_id(answers: dict[str, str]) -> str:
    """Name a combination by its first changed answers, `key:value` joined by commas."""
    shown = [f"{key}:{value}" for key, value in list(answers.items())[:3]]
    more = len(answers) - len(shown)
    return ",".join(shown) + (f",+{more} more" if more else "") if answers else "defaults"


# The whole generated project, one path per line, with the team's own package as {package}.
# When a file is added to or removed from the template on purpose, update this list: the test's
# failure message prints the paths that were missing or unexpected.
EXPECTED_FILES = """
.chalice/config.json
.github/workflows/ci.yml
.gitignore
.template-answers.json
Makefile
README.md
app.py
chalicelib/__init__.py
chalicelib/extension_points.py
chalicelib/template_runtime/__init__.py
chalicelib/template_runtime/aws_limits.py
chalicelib/template_runtime/batch.py
chalicelib/template_runtime/deadline.py
chalicelib/template_runtime/destination.py
chalicelib/template_runtime/endpoint.py
chalicelib/template_runtime/envelope.py
chalicelib/template_runtime/failures.py
chalicelib/template_runtime/feature_events.py
chalicelib/template_runtime/input_schema.py
chalicelib/template_runtime/publishing.py
chalicelib/template_runtime/redelivery.py
chalicelib/template_runtime/settings.py
chalicelib/template_runtime/source.py
chalicelib/template_runtime/telemetry.py
deploy/config.json
deploy/prices.json
model/code/inference.py
model/code/input.schema.json
model/code/requirements.txt
model/cooccurrence.json
model/samples.jsonl
{package}/__init__.py
{package}/clickstream.py
{package}/train.py
pyproject.toml
requirements-dev.lock
requirements-dev.txt
requirements-uv.lock
requirements.txt
schemas/prediction-envelope.schema.json
template_tools/__init__.py
template_tools/api_call_counter.py
template_tools/benchmark.py
template_tools/benchmark_report.py
template_tools/child_server.py
template_tools/cost.py
template_tools/deploy/__init__.py
template_tools/deploy/alarms.py
template_tools/deploy/arns.py
template_tools/deploy/artifacts.py
template_tools/deploy/autoscaling.py
template_tools/deploy/cli.py
template_tools/deploy/configuration.py
template_tools/deploy/destination.py
template_tools/deploy/endpoint_deploy.py
template_tools/deploy/endpoint_destroy.py
template_tools/deploy/event_source_mapping.py
template_tools/deploy/execution_role.py
template_tools/deploy/iam_policy.py
template_tools/deploy/image_uri.py
template_tools/deploy/merge_template.py
template_tools/deploy/metrics.py
template_tools/deploy/model_archive.py
template_tools/deploy/names.py
template_tools/deploy/package.py
template_tools/deploy/progress.py
template_tools/deploy/queues.py
template_tools/deploy/settings.py
template_tools/deploy/source.py
template_tools/deploy/stack_deploy.py
template_tools/deploy/stack_destroy.py
template_tools/deploy/template_checks.py
template_tools/deployment_footprint.py
template_tools/destination.py
template_tools/echo_model/code/inference.py
template_tools/echo_model/code/input.schema.json
template_tools/echo_model/code/requirements.txt
template_tools/echo_model/echo.json
template_tools/emulator.py
template_tools/endpoint_capacity.py
template_tools/endpoint_process.py
template_tools/endpoint_server.py
template_tools/fault_plan.py
template_tools/features_producer.py
template_tools/handler_bench.py
template_tools/lambda_trigger.py
template_tools/local_pipeline.py
template_tools/model_environment.py
template_tools/model_samples.py
template_tools/model_worker.py
template_tools/naive_handler.py
template_tools/operator_progress.py
template_tools/operator_stage.py
template_tools/redrive.py
template_tools/sample_event_files.py
template_tools/replay.py
template_tools/send.py
template_tools/serve.py
template_tools/sink_faults.py
template_tools/soak.py
template_tools/source.py
template_tools/stage.py
template_tools/tail.py
template_tools/tests/__init__.py
template_tools/tests/conftest.py
template_tools/tests/echo_inputs.py
template_tools/tests/lambda_events.py
template_tools/tests/sample_envelopes.py
template_tools/tests/test_benchmark.py
template_tools/tests/test_cost.py
template_tools/tests/test_deploy_endpoint.py
template_tools/tests/test_destination.py
template_tools/tests/test_endpoint_batching.py
template_tools/tests/test_endpoint_server.py
template_tools/tests/test_envelope_contract.py
template_tools/tests/test_event_source_mapping.py
template_tools/tests/test_extension_points.py
template_tools/tests/test_fault_injection.py
template_tools/tests/test_feature_events.py
template_tools/tests/test_handler.py
template_tools/tests/test_image_uri.py
template_tools/tests/test_lambda_trigger.py
template_tools/tests/test_local_pipeline.py
template_tools/tests/test_model_environment.py
template_tools/tests/test_operations.py
template_tools/tests/test_outage_and_last_delivery.py
template_tools/tests/test_packaging.py
template_tools/tests/test_pipeline_stack.py
template_tools/tests/test_publishing.py
template_tools/tests/test_redelivery_identity.py
template_tools/tests/test_sample_event_files.py
template_tools/tests/test_sink_errors.py
template_tools/tests/test_source.py
template_tools/tests/test_source_order.py
template_tools/tests/test_telemetry.py
template_tools/tests/test_time_budget.py
template_tools/tests/timing.py
template_tools/throughput_bench.py
tests/__init__.py
tests/conftest.py
tests/test_clickstream.py
tests/test_model.py
"""

# Files only some choices bring; the post-gen hook removes them for the others.
READ_API_FILES = """
chalicelib/template_runtime/predictions_api.py
schemas/predictions-api.openapi.json
template_tools/tests/test_predictions_api.py
"""
KINESIS_TRIGGER_FILES = """
template_tools/kinesis_trigger.py
template_tools/tests/test_kinesis_trigger.py
"""
QUEUE_SOURCE_FILES = """
template_tools/queue_source.py
template_tools/deploy/queue_source.py
"""
QUEUE_CONSUMER_FILES = """
examples/consume_predictions.py
template_tools/tests/test_example_consumer.py
"""
TRACING_FILES = """
chalicelib/template_runtime/tracing.py
template_tools/deploy/tracing.py
template_tools/tests/test_tracing.py
"""
GROUP_ORDER_FILES = """
template_tools/tests/test_group_order.py
"""

SOURCE_VARIABLES = {
    "sqs": "FEATURES_QUEUE_NAME",
    "sqs-fifo": "FEATURES_QUEUE_NAME",
    "kinesis": "FEATURES_STREAM_NAME",
}
DESTINATION_VARIABLES = {
    "sqs": "PREDICTIONS_QUEUE_NAME",
    "sns": "PREDICTIONS_TOPIC_NAME",
    "kinesis": "PREDICTIONS_STREAM_NAME",
    "dynamodb": "PREDICTIONS_TABLE_NAME",
}

JINJA_MARKERS = ("{{", "{%", "{#")


@pytest.fixture(scope="module", params=COMBINATIONS, ids=combination_id)
def baked(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Bake one combination once for all the checks in this module; return project and answers."""
    changes: dict[str, str] = request.param
    result = bake_into(tmp_path_factory.mktemp("combination"), changes)
    assert result.succeeded, f"baking {combination_id(changes)} failed: {result.error}"
    return {"project": result.project_dir, "answers": default_answers(changes)}


def generated_files(project: Path) -> set[str]:
    """List every file in a generated project as a POSIX path relative to it."""
    return {path.relative_to(project).as_posix() for path in project.rglob("*") if path.is_file()}


def text_files(project: Path) -> dict[Path, str]:
    """Read every generated file that is text (the template ships no binary files on purpose)."""
    texts = {}
    for path in sorted(project.rglob("*")):
        if path.is_file():
            try:
                texts[path] = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                pytest.fail(f"{path.relative_to(project)} is not UTF-8 text")
    return texts


def expected_files(answers: dict[str, Any]) -> set[str]:
    """List the files a project with these answers must hold, and no others."""
    lines = EXPECTED_FILES.split()
    if answers["output_destination"] == "dynamodb":
        lines += READ_API_FILES.split()
    if answers["input_source"] == "kinesis":
        lines += KINESIS_TRIGGER_FILES.split()
    else:
        lines += QUEUE_SOURCE_FILES.split()
    if answers["input_source"] != "sqs":
        lines += GROUP_ORDER_FILES.split()
    if answers["output_destination"] in ("sqs", "sns"):
        lines += QUEUE_CONSUMER_FILES.split()
    if answers["xray_tracing"] == "active":
        lines += TRACING_FILES.split()
    return {line.format(package=answers["package_name"]) for line in lines}


def test_a_project_holds_exactly_the_expected_files(baked: dict[str, Any]) -> None:
    """A stray or missing file (a cache, a file for an option not chosen) is caught here."""
    expected = expected_files(baked["answers"])
    actual = generated_files(baked["project"])
    assert sorted(expected - actual) == [], "missing from the generated project"
    assert sorted(actual - expected) == [], "generated but not expected (add to EXPECTED_FILES if meant)"


def test_the_project_folder_is_named_by_the_slug(baked: dict[str, Any]) -> None:
    """`cd <slug>` in the next steps must be where the project is."""
    assert baked["project"].name == baked["answers"]["project_slug"]


def test_no_template_syntax_survives_in_any_file(baked: dict[str, Any]) -> None:
    """A leftover `{{`, `{%` or `{#` means a variable was misspelt or escaping went wrong."""
    leftovers = [
        f"{path.relative_to(baked['project'])}:{number}: {line.strip()}"
        for path, text in text_files(baked["project"]).items()
        for number, line in enumerate(text.splitlines(), start=1)
        if any(marker in line for marker in JINJA_MARKERS)
    ]
    assert leftovers == []


def test_every_json_and_toml_file_parses(baked: dict[str, Any]) -> None:
    """Answers pasted into JSON or TOML must keep the file valid for the tools that read it."""
    for path, text in text_files(baked["project"]).items():
        if path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".toml":
            tomllib.loads(text)


def test_ruff_finds_nothing_in_the_generated_code(baked: dict[str, Any]) -> None:
    """Generated code must read as if written by hand: lint-clean under the project's own config."""
    ruff = ruff_executable()
    result = subprocess.run(
        [str(ruff), "check", "--no-cache", "."],
        cwd=baked["project"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_generated_code_is_already_formatted(baked: dict[str, Any]) -> None:
    """A team's first `ruff format` must not rewrite files it never touched (the answers included)."""
    result = subprocess.run(
        [str(ruff_executable()), "format", "--check", "--no-cache", "."],
        cwd=baked["project"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_chalice_config_carries_the_answers(baked: dict[str, Any]) -> None:
    """The handler reads its queues, endpoint and tuning from these values, so they must match."""
    answers = baked["answers"]
    config = json.loads((baked["project"] / ".chalice" / "config.json").read_text(encoding="utf-8"))
    assert config["app_name"] == answers["project_slug"]
    assert config["lambda_timeout"] == int(answers["lambda_timeout_seconds"])
    assert config["lambda_memory_size"] == int(answers["lambda_memory_mb"])
    shared = config["environment_variables"]
    assert shared["ENDPOINT_CONTENT_TYPE"] == answers["endpoint_content_type"]
    assert shared["RECORDS_PER_ENDPOINT_CALL"] == answers["records_per_endpoint_call"]
    assert shared["ENDPOINT_CONCURRENCY"] == answers["endpoint_concurrency"]
    assert shared["TRIGGER_BATCH_SIZE"] == answers["batch_size"]
    assert shared["TRIGGER_BATCHING_WINDOW_SECONDS"] == answers["maximum_batching_window_seconds"]
    # A Kinesis source scales with its shards; only SQS sources take a maximum concurrency.
    assert shared.get("TRIGGER_MAXIMUM_CONCURRENCY") == (
        None if answers["input_source"] == "kinesis" else answers["maximum_concurrency"]
    )
    assert shared["PAYLOAD_LOG_SAMPLE_RATE"] == answers["payload_log_sample_rate"]
    assert shared["MODEL_VERSION"] == answers["model_version"]
    prod = config["stages"]["prod"]["environment_variables"]
    assert prod[SOURCE_VARIABLES[answers["input_source"]]] == answers["features_source_name"]
    assert (
        prod[DESTINATION_VARIABLES[answers["output_destination"]]] == answers["predictions_destination_name"]
    )
    assert prod["DEAD_LETTER_QUEUE_NAME"] == answers["dead_letter_queue_name"]
    assert prod["ENDPOINT_NAME"] == answers["endpoint_name"]


def test_the_lambda_runtime_answer_reaches_the_build(baked: dict[str, Any]) -> None:
    """Chalice packages for the Python that runs it, so the Makefile must pin the chosen one."""
    version = baked["answers"]["lambda_runtime"].removeprefix("python")
    makefile = (baked["project"] / "Makefile").read_text(encoding="utf-8")
    assert f"RUNTIME_VERSION := {version}\n" in makefile


def test_the_sample_events_come_from_the_chosen_source_and_region(
    baked: dict[str, Any], tmp_path: Path
) -> None:
    """`make events` writes Lambda-shaped events, so their source ARN names this project's queue or stream.

    They are not shipped (they follow model/samples.jsonl); the project's own module writes them here.
    """
    answers = baked["answers"]
    name = answers["features_source_name"]
    resource = f"stream/{name}" if answers["input_source"] == "kinesis" else name
    result = subprocess.run(
        [sys.executable, "-m", "template_tools.sample_event_files", "--out", str(tmp_path)],
        cwd=baked["project"],
        env=os.environ | {"PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    paths = sorted(tmp_path.glob("*.json"))
    assert [path.name for path in paths] == ["feature-events.json", "malformed-record.json"]
    for path in paths:
        event = json.loads(path.read_text(encoding="utf-8"))
        for record in event["Records"]:
            assert record["awsRegion"] == answers["aws_region"], path.name
            assert record["eventSourceARN"].endswith(f":{answers['aws_region']}:123456789012:{resource}"), (
                path.name
            )


def test_the_deploy_config_carries_the_region_runtime_and_queue_answers(baked: dict[str, Any]) -> None:
    """`make deploy` creates the queues and pins the runtime from this file, not from the prompts."""
    answers = baked["answers"]
    config = json.loads((baked["project"] / "deploy" / "config.json").read_text(encoding="utf-8"))
    assert config["region"] == answers["aws_region"]
    assert config["lambda_runtime"] == answers["lambda_runtime"]
    assert config["queues"]["max_receive_count"] == int(answers["max_receive_count"])
    if answers["input_source"] == "kinesis":
        # A stream has no visibility timeout; Lambda's retries take its place.
        assert "visibility_timeout_seconds" not in config["queues"]
        assert config["streams"]["maximum_record_age_seconds"] > 0
    else:
        assert config["queues"]["visibility_timeout_seconds"] == int(answers["visibility_timeout_seconds"])
