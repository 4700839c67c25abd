# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""SQS building blocks of the stack: an encrypted, TLS-only queue, and the dead-letter queue.

Every choice of source has the dead-letter queue (the handler sends records it cannot predict
there, with their error reason); an SQS source also redrives records that keep failing into it,
and a Kinesis source names it as the event source's on-failure destination. A FIFO queue (name
ending .fifo) is created as FIFO, and its dead-letter queue must be FIFO too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .names import FIFO_SUFFIX, STACK_ARN_PREFIX

if TYPE_CHECKING:
    from .settings import DeploySettings

DEAD_LETTER_QUEUE = "DeadLetterQueue"
# Lambda's guidance for SQS triggers (see FACTS in the template): a visibility timeout of at
# least 6 function timeouts, and at least 5 receives before a record is dead-lettered.
VISIBILITY_TIMEOUT_FACTOR = 6
MIN_MAX_RECEIVE_COUNT = 5
SQS_DEFAULT_RETENTION_SECONDS = 345_600


def queue_arn(name: str) -> dict[str, str]:
    """A queue's ARN built from its name, for where a GetAtt would make a cycle."""
    return {"Fn::Sub": STACK_ARN_PREFIX % "sqs" + name}


def encrypted_queue(name: str, *, retention: int, **properties: Any) -> dict[str, Any]:
    """An SQS queue encrypted at rest; FIFO when the name ends .fifo."""
    fifo = {"FifoQueue": True} if name.endswith(FIFO_SUFFIX) else {}
    return {
        "Type": "AWS::SQS::Queue",
        # Records in flight are lost with the queue; `make destroy` checks the dead-letter queue first.
        "DeletionPolicy": "Delete",
        "UpdateReplacePolicy": "Delete",
        "Properties": {
            "QueueName": name,
            **fifo,
            # SSE with SQS-owned keys: encrypted at rest, no KMS key to manage or pay for, and the
            # function needs no kms: permissions.
            "SqsManagedSseEnabled": True,
            "MessageRetentionPeriod": retention,
            **properties,
        },
    }


def dead_letter_queue(settings: DeploySettings, redrive_allow_policy: dict[str, Any]) -> dict[str, Any]:
    """The dead-letter queue, which keeps records longer than any source (a moved message keeps its enqueue time)."""
    return encrypted_queue(
        settings.names.dead_letters,
        retention=settings.queues.dead_letter_retention_seconds,
        RedriveAllowPolicy=redrive_allow_policy,
    )


def deny_insecure_transport(logical_id: str) -> dict[str, Any]:
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


def with_tls_policies(resources: dict[str, Any]) -> dict[str, Any]:
    """The resources plus a TLS-only policy for each queue among them."""
    policies = {
        f"{logical_id}RequiresTls": deny_insecure_transport(logical_id)
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::SQS::Queue"
    }
    return {**resources, **policies}
