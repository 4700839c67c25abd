"""The stage's three SQS queues as CloudFormation resources: encrypted, TLS-only, with redrive.

The features queue hands records that keep failing to the dead-letter queue after
max_receive_count receives; the dead-letter queue accepts them from the features queue only and
keeps them longer (a moved message keeps its first enqueue time). The predictions queue is a
destination other teams consume: how often they retry is theirs to choose, so it has no
dead-letter queue of ours, whose alarm means "records the pipeline could not predict".
"""

from __future__ import annotations

from typing import Any

from .settings import DeploySettings

FEATURES_QUEUE = "FeaturesQueue"
PREDICTIONS_QUEUE = "PredictionsQueue"
DEAD_LETTER_QUEUE = "DeadLetterQueue"


def queue_resources(settings: DeploySettings) -> dict[str, Any]:
    """The queues and their policies, keyed by logical id."""
    queues = settings.queues
    resources: dict[str, Any] = {
        DEAD_LETTER_QUEUE: _queue(
            queues.dead_letters,
            retention=queues.dead_letter_retention_seconds,
            RedriveAllowPolicy={
                "redrivePermission": "byQueue",
                # The queue's ARN is built from its name: a GetAtt here would be a cycle, since
                # the features queue's redrive policy refers to this queue.
                "sourceQueueArns": [
                    {"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:" + queues.features}
                ],
            },
        ),
        FEATURES_QUEUE: _queue(
            queues.features,
            retention=queues.source_retention_seconds,
            VisibilityTimeout=queues.visibility_timeout_seconds,
            RedrivePolicy={
                "deadLetterTargetArn": {"Fn::GetAtt": [DEAD_LETTER_QUEUE, "Arn"]},
                "maxReceiveCount": queues.max_receive_count,
            },
        ),
        PREDICTIONS_QUEUE: _queue(queues.predictions, retention=queues.predictions_retention_seconds),
    }
    for logical_id in (FEATURES_QUEUE, PREDICTIONS_QUEUE, DEAD_LETTER_QUEUE):
        resources[f"{logical_id}RequiresTls"] = _deny_insecure_transport(logical_id)
    return resources


def _queue(name: str, *, retention: int, **properties: Any) -> dict[str, Any]:
    return {
        "Type": "AWS::SQS::Queue",
        # Records in flight are lost with the queue; `make destroy` checks the dead-letter queue first.
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Properties": {
            "QueueName": name,
            # SSE with SQS-owned keys: encrypted at rest, no KMS key to manage or pay for, and the
            # function needs no kms: permissions.
            "SqsManagedSseEnabled": True,
            "MessageRetentionPeriod": retention,
            **properties,
        },
    }


def _deny_insecure_transport(logical_id: str) -> dict[str, Any]:
    """A queue policy that refuses every request not made over TLS."""
    return {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": logical_id}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "DenyInsecureTransport",
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "sqs:*",
                        "Resource": {"Fn::GetAtt": [logical_id, "Arn"]},
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            },
        },
    }
