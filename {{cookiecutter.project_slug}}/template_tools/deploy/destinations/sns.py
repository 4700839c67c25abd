# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The predictions destination, an SNS topic: the topic, IAM, alarm, dashboard graph and outputs.

Teams subscribe their own queues or functions to the topic (its ARN is a stack output) and
filter on the message attributes (schema_version, model_version, endpoint_name). The topic is
encrypted with the AWS-managed key alias/aws/sns: the function publishes with no kms:
permission (that key's policy lets the account's principals use it through SNS), and SNS
decrypts before it delivers, so subscribers in other accounts are not affected. Other AWS
services (CloudWatch alarms, S3 events) cannot publish to a topic under that key; nothing here
needs them to. Subscribers in other accounts need a topic policy statement allowing
sns:Subscribe, added by the team that owns the topic.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from .metrics import MINUTE_PERIOD_SECONDS, alarm

if TYPE_CHECKING:
    from .arns import ArnSource
    from .settings import DeploySettings

DESCRIPTION = "an SNS topic"
PREDICTIONS_VARIABLE = "PREDICTIONS_TOPIC_NAME"
PREDICTIONS = "PredictionsTopic"
# Every action this destination needs supports resource-level permissions.
WILDCARD_ACTIONS: frozenset[str] = frozenset()
# A standard topic's name (a FIFO topic's would end .fifo; predictions fan out to any number of
# subscribers, and a FIFO topic delivers to SQS queues only).
TOPIC_NAME = re.compile(r"[A-Za-z0-9_-]{1,256}")


def predictions_name_problem(name: str) -> str | None:
    """Say why the name cannot be the predictions topic, or None if it can."""
    if not TOPIC_NAME.fullmatch(name):
        return f"{name!r} is not an SNS topic name: 1-256 letters, digits, hyphens and underscores"
    return None


def settings_problems(settings: DeploySettings) -> list[str]:
    """None: the topic has nothing to configure in deploy/config.json."""
    return []


def destination_resources(settings: DeploySettings) -> dict[str, Any]:
    """The predictions topic and a topic policy that refuses requests without TLS."""
    return {
        PREDICTIONS: {
            "Type": "AWS::SNS::Topic",
            "DeletionPolicy": "Delete",
            "UpdateReplacePolicy": "Delete",
            "Properties": {"TopicName": settings.names.predictions, "KmsMasterKeyId": "alias/aws/sns"},
        },
        f"{PREDICTIONS}RequiresTls": {
            "Type": "AWS::SNS::TopicPolicy",
            "Properties": {
                "Topics": [{"Ref": PREDICTIONS}],
                "PolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "DenyInsecureTransport",
                            "Effect": "Deny",
                            "Principal": "*",
                            "Action": "sns:Publish",
                            "Resource": {"Ref": PREDICTIONS},
                            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                        }
                    ],
                },
            },
        },
    }


def destination_statements(settings: DeploySettings, arns: ArnSource) -> list[dict[str, Any]]:
    """Publishing predictions; PublishBatch is authorised as sns:Publish.

    The handler builds the topic's ARN from sts:GetCallerIdentity, which needs no permission: AWS
    answers it for every principal, so the policy grants nothing for it.
    """
    return [
        {
            "Sid": "PublishPredictions",
            "Effect": "Allow",
            "Action": ["sns:Publish"],
            "Resource": [arns.arn(PREDICTIONS, "sns", settings.names.predictions, "TopicArn")],
        }
    ]


def destination_alarms(settings: DeploySettings) -> dict[str, Any]:
    """SNS failed to deliver to a subscriber: that team is missing predictions.

    A failed publish is the handler's batch item failure (retried, then dead-lettered); a failed
    delivery is invisible to the handler, and only this metric shows it.
    """
    topic = settings.names.predictions
    return {
        "PredictionDeliveryFailedAlarm": alarm(
            settings,
            "prediction-delivery-failed",
            f"SNS could not deliver predictions from {topic} to a subscriber after its retries; check the "
            "subscriptions' delivery status logs and their dead-letter queues (RedrivePolicy).",
            namespace="AWS/SNS",
            metric="NumberOfNotificationsFailed",
            dimensions=[{"Name": "TopicName", "Value": topic}],
            statistic="Sum",
            period=MINUTE_PERIOD_SECONDS,
            threshold=0,
            evaluation_periods=5,
            datapoints_to_alarm=2,
        )
    }


def destination_metrics(settings: DeploySettings) -> list[list[Any]]:
    """The dashboard's predictions lines."""
    topic = settings.names.predictions
    return [
        ["AWS/SNS", "NumberOfMessagesPublished", "TopicName", topic, {"stat": "Sum"}],
        ["AWS/SNS", "NumberOfNotificationsFailed", "TopicName", topic, {"stat": "Sum"}],
    ]


def destination_outputs() -> dict[str, Any]:
    """The topic's ARN, which subscribers need."""
    return {"PredictionsTopicArn": {"Value": {"Ref": PREDICTIONS}}}


def read_api_resources(settings: DeploySettings, arns: ArnSource) -> dict[str, Any]:
    """None: predictions are delivered to subscribers, not read through an API."""
    return {}


def chalice_policy_files(settings: DeploySettings, arns: ArnSource, stage: str) -> dict[str, dict[str, Any]]:
    """None besides the handler's: the app has no other function."""
    return {}


def teardown_notice(settings: DeploySettings) -> str:
    """What deleting the stack does to the predictions."""
    return f"The topic {settings.names.predictions} and its subscriptions are deleted; subscribers stop receiving."
