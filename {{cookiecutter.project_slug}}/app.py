"""Lambda entry point: {% if cookiecutter.input_source == "kinesis" %}the features stream{% else %}the features queue{% endif %} triggers the batch processor in chalicelib/."""

import os
from functools import cache

from chalice import Chalice
{%- if cookiecutter.input_source == "kinesis" %}
from chalice.app import KinesisEvent
{%- else %}
from chalice.app import SQSEvent
{%- endif %}

from chalicelib.template_runtime.batch import BatchProcessor
{%- if cookiecutter.output_destination == "dynamodb" %}
from chalicelib.template_runtime.predictions_api import read_api
{%- endif %}
from chalicelib.template_runtime.settings import HandlerSettings, TriggerSettings
from chalicelib.template_runtime.telemetry import use_json_logs
{%- if cookiecutter.xray_tracing == "active" %}
from chalicelib.template_runtime.tracing import trace_aws_calls
{%- endif %}

app = Chalice(app_name="{{ cookiecutter.project_slug }}")
# Every log line is one JSON object with the request id; see chalicelib/telemetry.py.
use_json_logs(os.environ.get("LOG_LEVEL", "INFO"))
{%- if cookiecutter.xray_tracing == "active" %}
trace_aws_calls()
{%- endif %}
{%- if cookiecutter.output_destination == "dynamodb" %}
# GET /predictions/{key}: the latest prediction for one key, read from the table. auth="iam":
# callers sign requests with AWS credentials (SigV4); "none": anyone with the URL may call it.
app.register_blueprint(read_api(auth="{{ cookiecutter.read_api_auth }}"))
{%- endif %}

# Read while `chalice package`/`deploy` import this file: the stage's environment variables
# are set then, so each stage can have its own {% if cookiecutter.input_source == "kinesis" %}stream{% else %}queue{% endif %} and trigger settings.
trigger = TriggerSettings.from_env()


@cache
def batch_processor() -> BatchProcessor:
    """Clients and thread pool, created on the first invocation and reused by every later one."""
    return BatchProcessor.from_settings(HandlerSettings.from_env())

{% if cookiecutter.input_source == "kinesis" %}
# Chalice does not set ReportBatchItemFailures, bisect-on-error, retry limits or an on-failure
# destination on the event source mapping: `make package` adds them through the merge template.
# Without ReportBatchItemFailures Lambda would ignore the returned failure list and retry the
# whole batch until the records expire.
@app.on_kinesis_record(
    stream=trigger.features_source_name,
    batch_size=trigger.batch_size,
    # Start with the oldest record the stream still holds, so nothing sent before the first
    # deployment is skipped.
    starting_position="TRIM_HORIZON",
    maximum_batching_window_in_seconds=trigger.batching_window_seconds,
)
def handle_feature_events(event: KinesisEvent) -> dict:
    return batch_processor().process(event.to_dict()["Records"], event.context)
{%- else %}
# Chalice does not set ReportBatchItemFailures on the event source mapping (aws/chalice#2029):
# `make package` adds it through the merge template. Without it Lambda would ignore the
# returned failure list and delete the whole batch.
@app.on_sqs_message(
    queue=trigger.features_source_name,
    batch_size=trigger.batch_size,
    maximum_batching_window_in_seconds=trigger.batching_window_seconds,
    maximum_concurrency=trigger.maximum_concurrency,
)
def handle_feature_events(event: SQSEvent) -> dict:
    return batch_processor().process(event.to_dict()["Records"], event.context)
{%- endif %}
