# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""What the SQS standard and FIFO sources' deploy modules share; each hands it on as deploy/source.py's.

A Kinesis project has no features queue, so it does not get this file.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import ClientError

from chalicelib.template_runtime.settings import MAX_RECEIVE_COUNT

if TYPE_CHECKING:
    from .settings import DeploySettings


def function_environment(settings: DeploySettings) -> dict[str, str]:
    """What the merge template adds to the function's environment for this source: the queue's
    maxReceiveCount, so that on a record's last delivery the handler dead-letters it with its
    reason rather than leave it to the redrive policy, which moves it without one. After a plain
    `chalice deploy`, deploy/event_source_mapping.py sets the same variable from the queue's own
    RedrivePolicy, and local mode from its local queue's."""
    return {MAX_RECEIVE_COUNT: str(settings.queues.max_receive_count)}


def existing_source_problems(settings: DeploySettings) -> list[str]:
    """Why a features queue made elsewhere (the plain `chalice deploy` path) does not fit the handler:
    its redrive policy must give up after queues.max_receive_count receives, the count the handler
    takes for a record's last delivery."""
    sqs = boto3.client("sqs", region_name=settings.region)
    queue = settings.names.features
    try:
        url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["RedrivePolicy"])["Attributes"]
    except ClientError as error:
        return [f"cannot read the redrive policy of {queue}: {error}"]
    receives = json.loads(attributes.get("RedrivePolicy", "{}")).get("maxReceiveCount")
    if receives is not None and int(receives) == settings.queues.max_receive_count:
        return []
    return [
        f"{queue} moves a record to its dead-letter queue after {receives or 'no limit of'} receives, but "
        f"queues.max_receive_count in deploy/config.json is {settings.queues.max_receive_count}: make them equal, "
        "so the handler knows a record's last delivery"
    ]
