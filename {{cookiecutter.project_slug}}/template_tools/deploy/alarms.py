# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""CloudWatch alarms and a dashboard for one stage of the pipeline, as CloudFormation resources.

Alarms: the dead-letter queue is not empty; the feature events wait too long (the function is not
keeping up, or not running: the source's alarm, deploy/source.py); the handler failed whole
batches; the endpoint answered 5xx; the endpoint does not exist (the handler's EndpointNotFound
metric); the dead-letter queue refuses dead letters (the handler's DeadLetterRefused metric); the
endpoint's model latency is high; and the destination's own (deploy/destination.py).
They notify alarms.action_topic_arn when set.
"""

from __future__ import annotations

import json
from typing import Any

from chalicelib.template_runtime.telemetry import (
    DEAD_LETTER_REFUSED_METRIC,
    DEFAULT_METRICS_NAMESPACE,
    ENDPOINT_NOT_FOUND_METRIC,
)

from . import destination, source
from .metrics import LAMBDA_PERIOD_SECONDS, MINUTE_PERIOD_SECONDS, SQS_PERIOD_SECONDS, alarm, widget
from .settings import VARIANT_NAME, DeploySettings

MICROSECONDS_PER_MS = 1000


def alarm_resources(settings: DeploySettings) -> dict[str, Any]:
    """The alarms and the dashboard, keyed by logical id."""
    dead_letters, alarms = settings.names.dead_letters, settings.alarms
    endpoint = [
        {"Name": "EndpointName", "Value": settings.endpoint.name},
        {"Name": "VariantName", "Value": VARIANT_NAME},
    ]
    return {
        "DeadLetterQueueNotEmptyAlarm": alarm(
            settings,
            "dead-letters-not-empty",
            f"Records the pipeline could not predict are waiting in {dead_letters}; read their "
            "error_reason attribute, fix the cause, then redrive or replay them.",
            namespace="AWS/SQS",
            metric="ApproximateNumberOfMessagesVisible",
            dimensions=[{"Name": "QueueName", "Value": dead_letters}],
            statistic="Maximum",
            period=SQS_PERIOD_SECONDS,
            threshold=0,
        ),
        **source.source_alarms(settings),
        "HandlerErrorsAlarm": alarm(
            settings,
            "handler-errors",
            f"{settings.function_name} raised instead of returning a partial batch response; the whole "
            "batch is delivered again. See the function's log group.",
            namespace="AWS/Lambda",
            metric="Errors",
            dimensions=[{"Name": "FunctionName", "Value": settings.function_name}],
            statistic="Sum",
            period=LAMBDA_PERIOD_SECONDS,
            threshold=0,
        ),
        "EndpointServerErrorsAlarm": alarm(
            settings,
            "endpoint-5xx",
            f"{settings.endpoint.name} answered 5xx. A ModelError (the model container answered 5xx, a crash "
            "in inference.py for one) is not retried: its record is dead-lettered at once with the model's "
            "message, to redrive once the model is fixed. SageMaker's own 5xx (ServiceUnavailable, "
            "InternalFailure) are retried, and a record still failing on its last delivery is dead-lettered "
            "with the reason.",
            namespace="AWS/SageMaker",
            metric="Invocation5XXErrors",
            dimensions=endpoint,
            statistic="Sum",
            period=MINUTE_PERIOD_SECONDS,
            threshold=0,
            evaluation_periods=5,
            datapoints_to_alarm=2,
        ),
        "EndpointNotFoundAlarm": _any_in_a_minute(
            settings,
            "endpoint-not-found",
            f"{settings.function_name} cannot find the endpoint {settings.endpoint.name} (InvokeEndpoint: "
            "ValidationError, not found): a wrong ENDPOINT_NAME, a stack deployed before its endpoint, or an "
            "endpoint being re-created. The records are retried, not dead-lettered, until their last delivery; "
            "deploy the endpoint (make deploy-endpoint) or fix the name.",
            ENDPOINT_NOT_FOUND_METRIC,
        ),
        "DeadLetterRefusedAlarm": _any_in_a_minute(
            settings,
            "dead-letter-refused",
            f"The dead-letter queue {dead_letters} refused dead letters from {settings.function_name}. "
            "Their records are retried, never dropped, but they come back until the source gives up on "
            "them, and then leave without the handler's reason. The dead_letter_refused log lines (level "
            "ERROR) carry the queue's error code: a deleted queue, a denied sqs:SendMessage, a KMS key.",
            DEAD_LETTER_REFUSED_METRIC,
        ),
        "EndpointLatencyAlarm": alarm(
            settings,
            "endpoint-latency",
            f"{settings.endpoint.name}'s p90 model latency is above {alarms.endpoint_latency_ms} ms.",
            namespace="AWS/SageMaker",
            metric="ModelLatency",
            dimensions=endpoint,
            statistic="p90",
            period=MINUTE_PERIOD_SECONDS,
            # ModelLatency is reported in microseconds.
            threshold=alarms.endpoint_latency_ms * MICROSECONDS_PER_MS,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        ),
        **destination.destination_alarms(settings),
        "PipelineDashboard": _dashboard(settings),
    }


def _any_in_a_minute(settings: DeploySettings, name: str, description: str, metric: str) -> dict[str, Any]:
    """An alarm on one of the handler's own counts (telemetry.py), which only batches that meet the
    condition write: any in a minute, for the stage's endpoint."""
    return alarm(
        settings,
        name,
        description,
        namespace=metrics_namespace(settings),
        metric=metric,
        dimensions=[{"Name": "EndpointName", "Value": settings.endpoint.name}],
        statistic="Sum",
        period=MINUTE_PERIOD_SECONDS,
        threshold=0,
    )


def metrics_namespace(settings: DeploySettings) -> str:
    """Where the handler writes its own metrics: the stage's METRICS_NAMESPACE, as the handler reads it."""
    return settings.environment.get("METRICS_NAMESPACE", "").strip() or DEFAULT_METRICS_NAMESPACE


def _dashboard(settings: DeploySettings) -> dict[str, Any]:
    dead_letters, function, endpoint = settings.names.dead_letters, settings.function_name, settings.endpoint.name
    variant = ["EndpointName", endpoint, "VariantName", VARIANT_NAME]
    widgets = [
        widget("Feature events", source.source_metrics(settings)),
        widget(
            "Predictions and dead letters",
            [
                *destination.destination_metrics(settings),
                ["AWS/SQS", "NumberOfMessagesSent", "QueueName", dead_letters, {"stat": "Sum"}],
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dead_letters],
            ],
        ),
        widget(
            "Handler",
            [
                ["AWS/Lambda", "Invocations", "FunctionName", function, {"stat": "Sum"}],
                ["AWS/Lambda", "Errors", "FunctionName", function, {"stat": "Sum"}],
                ["AWS/Lambda", "Throttles", "FunctionName", function, {"stat": "Sum"}],
                ["AWS/Lambda", "Duration", "FunctionName", function, {"stat": "p90", "yAxis": "right"}],
            ],
        ),
        widget(
            "Endpoint",
            [
                ["AWS/SageMaker", "Invocations", *variant, {"stat": "Sum"}],
                ["AWS/SageMaker", "Invocation4XXErrors", *variant, {"stat": "Sum"}],
                ["AWS/SageMaker", "Invocation5XXErrors", *variant, {"stat": "Sum"}],
                ["AWS/SageMaker", "ModelLatency", *variant, {"stat": "p90", "yAxis": "right"}],
            ],
        ),
    ]
    for index, placed in enumerate(widgets):
        placed.update(x=(index % 2) * 12, y=(index // 2) * 6)
    body = json.dumps({"widgets": widgets}, separators=(",", ":"))
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {"DashboardName": settings.stack_name, "DashboardBody": {"Fn::Sub": body}},
    }
