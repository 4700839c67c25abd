# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The handler's configuration, read from the Lambda environment once per process."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from . import source
from .aws_limits import INVOKE_ENDPOINT_MAX_REQUEST_BYTES
from .deadline import DEFAULT_RESERVE_MS

# Set to "true" only where the trigger is known to have FunctionResponseTypes [ReportBatchItemFailures]:
# the packaged stack (deploy/merge_template.py) and the fix-up after `chalice deploy`
# (deploy/event_source_mapping.py) set it, and so do the local triggers, which honour the list.
TRIGGER_REPORTS_BATCH_ITEM_FAILURES = "TRIGGER_REPORTS_BATCH_ITEM_FAILURES"


# The features queue's maxReceiveCount, as the stack gives it to the function (deploy/source.py).
MAX_RECEIVE_COUNT = "MAX_RECEIVE_COUNT"


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"environment variable {name} is not set (see .chalice/config.json)")
    return value


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a whole number") from None
    if value < 1:
        raise SettingsError(f"{name}={value} must be at least 1")
    return value


def _fraction(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, "").strip() or "0"
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not 0 <= value <= 1:
        raise SettingsError(f"{name}={value} must be from 0 to 1")
    return value


@dataclass(frozen=True)
class TriggerSettings:
    """How the event source feeds the function; read while app.py is imported."""

    features_source_name: str
    batch_size: int
    batching_window_seconds: int
    # Invocations an SQS trigger may run at once; None for a source without that setting (Kinesis).
    maximum_concurrency: int | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TriggerSettings:
        # Looked up at call time: the Chalice test client swaps os.environ for a patched copy.
        env = os.environ if env is None else env
        window = env.get("TRIGGER_BATCHING_WINDOW_SECONDS", "0").strip() or "0"
        if not window.isdigit():
            raise SettingsError(f"TRIGGER_BATCHING_WINDOW_SECONDS={window!r} is not a whole number")
        return cls(
            features_source_name=_required(env, source.FEATURES_SOURCE_VARIABLE),
            batch_size=_positive_int(env, "TRIGGER_BATCH_SIZE", 10),
            batching_window_seconds=int(window),
            maximum_concurrency=(
                _positive_int(env, "TRIGGER_MAXIMUM_CONCURRENCY", 2) if source.TRIGGER_HAS_MAXIMUM_CONCURRENCY else None
            ),
        )


@dataclass(frozen=True)
class HandlerSettings:
    """How the endpoint is called and where failed records go (destination.py knows the rest)."""

    dead_letter_queue_name: str
    endpoint_name: str
    model_version: str
    endpoint_content_type: str
    records_per_endpoint_call: int
    endpoint_concurrency: int
    endpoint_payload_limit: int
    endpoint_timeout_seconds: int
    # Time kept back at the end of an invocation to publish what was predicted and return.
    deadline_reserve_ms: int
    max_record_bytes: int
    # JSON Schema file for the model input, relative to the code root; empty turns the check off.
    model_input_schema: str
    # The model-input field whose value keys each prediction in a keyed destination (a Kinesis
    # stream, a DynamoDB table); empty when the destination is not keyed.
    partition_key_field: str
    # CloudWatch namespace of the handler's metrics (Embedded Metric Format).
    metrics_namespace: str
    # Whether Lambda acts on the returned batchItemFailures (see TRIGGER_REPORTS_BATCH_ITEM_FAILURES).
    trigger_reports_batch_item_failures: bool
    # Share of predictions logged with their features and output: 0 keeps personal data out of logs.
    payload_log_sample_rate: float
    # The features queue's maxReceiveCount (MAX_RECEIVE_COUNT, which the stack sets from
    # deploy/config.json): on a record's last delivery the handler dead-letters it with its
    # reason instead of returning it. None: the queue's redrive policy decides, without a reason.
    max_receive_count: int | None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> HandlerSettings:
        # Looked up at call time: the Chalice test client swaps os.environ for a patched copy.
        env = os.environ if env is None else env
        return cls(
            dead_letter_queue_name=_required(env, "DEAD_LETTER_QUEUE_NAME"),
            endpoint_name=_required(env, "ENDPOINT_NAME"),
            model_version=env.get("MODEL_VERSION", "").strip() or "unversioned",
            endpoint_content_type=env.get("ENDPOINT_CONTENT_TYPE", "").strip() or "application/json",
            records_per_endpoint_call=_positive_int(env, "RECORDS_PER_ENDPOINT_CALL", 100),
            endpoint_concurrency=_positive_int(env, "ENDPOINT_CONCURRENCY", 4),
            endpoint_payload_limit=_positive_int(
                env, "ENDPOINT_PAYLOAD_LIMIT_BYTES", INVOKE_ENDPOINT_MAX_REQUEST_BYTES
            ),
            endpoint_timeout_seconds=_positive_int(env, "ENDPOINT_TIMEOUT_SECONDS", 10),
            deadline_reserve_ms=_positive_int(env, "DEADLINE_RESERVE_MS", DEFAULT_RESERVE_MS),
            # A record this large cannot be a sensible model input; it also keeps one record
            # from filling a whole InvokeEndpoint request.
            max_record_bytes=_positive_int(env, "MAX_RECORD_BYTES", 256 * 1024),
            model_input_schema=env.get("MODEL_INPUT_SCHEMA", "model/code/input.schema.json").strip(),
            partition_key_field=env.get("PARTITION_KEY_FIELD", "").strip(),
            metrics_namespace=env.get("METRICS_NAMESPACE", "").strip() or "StreamingPredictions",
            trigger_reports_batch_item_failures=env.get(TRIGGER_REPORTS_BATCH_ITEM_FAILURES, "").strip() == "true",
            payload_log_sample_rate=_fraction(env, "PAYLOAD_LOG_SAMPLE_RATE"),
            max_receive_count=_positive_int(env, MAX_RECEIVE_COUNT, 0) or None,
        )
