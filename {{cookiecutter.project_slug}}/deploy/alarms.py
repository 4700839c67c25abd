"""CloudWatch alarms and a dashboard for one stage of the pipeline, as CloudFormation resources.

Alarms: the dead-letter queue is not empty; the oldest feature event has waited too long (the
function is not keeping up, or not running); the handler failed whole batches; the endpoint
answered 5xx; the endpoint's model latency is high. They notify alarms.action_topic_arn when set.
"""

from __future__ import annotations

import json
from typing import Any

from .settings import VARIANT_NAME, DeploySettings

# SQS publishes its metrics every five minutes; a shorter period only sees gaps.
SQS_PERIOD_SECONDS = 300
LAMBDA_PERIOD_SECONDS = 300
ENDPOINT_PERIOD_SECONDS = 60
MICROSECONDS_PER_MS = 1000


def alarm_resources(settings: DeploySettings) -> dict[str, Any]:
    """The five alarms and the dashboard, keyed by logical id."""
    queues, alarms = settings.queues, settings.alarms
    endpoint = [
        {"Name": "EndpointName", "Value": settings.endpoint.name},
        {"Name": "VariantName", "Value": VARIANT_NAME},
    ]
    return {
        "DeadLetterQueueNotEmptyAlarm": _alarm(
            settings,
            "dead-letters-not-empty",
            f"Records the pipeline could not predict are waiting in {queues.dead_letters}; read their "
            "error_reason attribute, fix the cause, then redrive them (StartMessageMoveTask).",
            namespace="AWS/SQS",
            metric="ApproximateNumberOfMessagesVisible",
            dimensions=[{"Name": "QueueName", "Value": queues.dead_letters}],
            statistic="Maximum",
            period=SQS_PERIOD_SECONDS,
            threshold=0,
        ),
        "FeaturesBacklogAgeAlarm": _alarm(
            settings,
            "features-backlog-age",
            f"The oldest record in {queues.features} is older than {alarms.oldest_message_age_seconds} s: "
            "the function is failing, throttled or too slow for the traffic.",
            namespace="AWS/SQS",
            metric="ApproximateAgeOfOldestMessage",
            dimensions=[{"Name": "QueueName", "Value": queues.features}],
            statistic="Maximum",
            period=SQS_PERIOD_SECONDS,
            threshold=alarms.oldest_message_age_seconds,
        ),
        "HandlerErrorsAlarm": _alarm(
            settings,
            "handler-errors",
            f"{settings.function_name} raised instead of returning a partial batch response; SQS "
            "redelivers the whole batch. See the function's log group.",
            namespace="AWS/Lambda",
            metric="Errors",
            dimensions=[{"Name": "FunctionName", "Value": settings.function_name}],
            statistic="Sum",
            period=LAMBDA_PERIOD_SECONDS,
            threshold=0,
        ),
        "EndpointServerErrorsAlarm": _alarm(
            settings,
            "endpoint-5xx",
            f"{settings.endpoint.name} answered 5xx; records are retried and may reach the dead-letter queue.",
            namespace="AWS/SageMaker",
            metric="Invocation5XXErrors",
            dimensions=endpoint,
            statistic="Sum",
            period=ENDPOINT_PERIOD_SECONDS,
            threshold=0,
            evaluation_periods=5,
            datapoints_to_alarm=2,
        ),
        "EndpointLatencyAlarm": _alarm(
            settings,
            "endpoint-latency",
            f"{settings.endpoint.name}'s p90 model latency is above {alarms.endpoint_latency_ms} ms.",
            namespace="AWS/SageMaker",
            metric="ModelLatency",
            dimensions=endpoint,
            statistic="p90",
            period=ENDPOINT_PERIOD_SECONDS,
            # ModelLatency is reported in microseconds.
            threshold=alarms.endpoint_latency_ms * MICROSECONDS_PER_MS,
            evaluation_periods=5,
            datapoints_to_alarm=3,
        ),
        "PipelineDashboard": _dashboard(settings),
    }


def _alarm(
    settings: DeploySettings,
    suffix: str,
    description: str,
    *,
    namespace: str,
    metric: str,
    dimensions: list[dict[str, str]],
    statistic: str,
    period: int,
    threshold: float,
    evaluation_periods: int = 1,
    datapoints_to_alarm: int = 1,
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "AlarmName": f"{settings.stack_name}-{suffix}",
        "AlarmDescription": description,
        "Namespace": namespace,
        "MetricName": metric,
        "Dimensions": dimensions,
        "Period": period,
        "EvaluationPeriods": evaluation_periods,
        "DatapointsToAlarm": datapoints_to_alarm,
        "Threshold": threshold,
        "ComparisonOperator": "GreaterThanThreshold",
        # No data means no traffic (or no endpoint yet), which is not a failure.
        "TreatMissingData": "notBreaching",
    }
    if statistic.startswith("p"):
        properties["ExtendedStatistic"] = statistic
    else:
        properties["Statistic"] = statistic
    topic = settings.alarms.action_topic_arn
    if topic:
        properties["AlarmActions"] = [topic]
        properties["OKActions"] = [topic]
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": properties}


def _dashboard(settings: DeploySettings) -> dict[str, Any]:
    queues, function, endpoint = settings.queues, settings.function_name, settings.endpoint.name
    variant = ["EndpointName", endpoint, "VariantName", VARIANT_NAME]
    widgets = [
        _widget(
            "Feature events",
            [
                ["AWS/SQS", "NumberOfMessagesSent", "QueueName", queues.features, {"stat": "Sum"}],
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queues.features],
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queues.features, {"yAxis": "right"}],
            ],
        ),
        _widget(
            "Predictions and dead letters",
            [
                ["AWS/SQS", "NumberOfMessagesSent", "QueueName", queues.predictions, {"stat": "Sum"}],
                ["AWS/SQS", "NumberOfMessagesSent", "QueueName", queues.dead_letters, {"stat": "Sum"}],
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queues.dead_letters],
            ],
        ),
        _widget(
            "Handler",
            [
                ["AWS/Lambda", "Invocations", "FunctionName", function, {"stat": "Sum"}],
                ["AWS/Lambda", "Errors", "FunctionName", function, {"stat": "Sum"}],
                ["AWS/Lambda", "Throttles", "FunctionName", function, {"stat": "Sum"}],
                ["AWS/Lambda", "Duration", "FunctionName", function, {"stat": "p90", "yAxis": "right"}],
            ],
        ),
        _widget(
            "Endpoint",
            [
                ["AWS/SageMaker", "Invocations", *variant, {"stat": "Sum"}],
                ["AWS/SageMaker", "Invocation4XXErrors", *variant, {"stat": "Sum"}],
                ["AWS/SageMaker", "Invocation5XXErrors", *variant, {"stat": "Sum"}],
                ["AWS/SageMaker", "ModelLatency", *variant, {"stat": "p90", "yAxis": "right"}],
            ],
        ),
    ]
    for index, widget in enumerate(widgets):
        widget.update(x=(index % 2) * 12, y=(index // 2) * 6)
    body = json.dumps({"widgets": widgets}, separators=(",", ":"))
    return {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {"DashboardName": settings.stack_name, "DashboardBody": {"Fn::Sub": body}},
    }


def _widget(title: str, metrics: list[list[Any]]) -> dict[str, Any]:
    return {
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "region": "${AWS::Region}",
            "view": "timeSeries",
            "period": 300,
            "metrics": metrics,
        },
    }
