# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""CloudWatch building blocks: one alarm and one dashboard widget, shared by alarms.py and the variants."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .settings import DeploySettings

# SQS publishes its metrics every five minutes; a shorter period only sees gaps.
SQS_PERIOD_SECONDS = 300
LAMBDA_PERIOD_SECONDS = 300
# Endpoint, Kinesis, SNS, DynamoDB and API Gateway metrics arrive every minute.
MINUTE_PERIOD_SECONDS = 60


def alarm(
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
    """An alarm when the metric is above the threshold; no data (no traffic) is not a failure."""
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


def widget(title: str, metrics: list[list[Any]]) -> dict[str, Any]:
    """A time-series dashboard widget; the dashboard places it."""
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
