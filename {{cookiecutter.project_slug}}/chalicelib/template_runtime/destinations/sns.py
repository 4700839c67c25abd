# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The prediction destination: an SNS topic that fans each prediction out to every subscriber.

What it guarantees: every accepted prediction is delivered at least once to each subscription,
in no particular order. Each prediction carries schema_version, model_version and endpoint_name
as String message attributes, so a subscription's filter policy can pick predictions without
reading them (for example only one model version). Consumers drop duplicates on the envelope's
message_id.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Executor
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from .aws_limits import SNS_MAX_BATCH_ENTRIES
from .failures import RecordFailure
from .publishing import OutgoingMessage, Sink, aws_client, batch_entry_failures, call_failed, plan_batches, send_batches

# SNS takes messages of up to 256 KiB, message attributes included, and PublishBatch 256 KiB in all.
MAX_MESSAGE_BYTES = 262_144
MAX_BATCH_BYTES = 262_144


class TopicPublisher:
    """Publishes to one topic with PublishBatch; the topic's ARN is worked out once, on first use."""

    def __init__(self, sns_client: Any, sts_client: Any, topic_name: str, executor: Executor) -> None:
        self._sns = sns_client
        self._sts = sts_client
        self._topic_name = topic_name
        self._executor = executor
        self._topic_arn: str | None = None

    @property
    def topic_arn(self) -> str:
        if self._topic_arn is None:
            # GetCallerIdentity needs no IAM permission, unlike looking the topic up by name, and
            # its ARN carries the partition (aws, aws-cn, aws-us-gov).
            caller_arn = self._sts.get_caller_identity()["Arn"]
            partition, account = caller_arn.split(":")[1], caller_arn.split(":")[4]
            region = self._sns.meta.region_name
            self._topic_arn = f"arn:{partition}:sns:{region}:{account}:{self._topic_name}"
        return self._topic_arn

    def send(self, messages: Sequence[OutgoingMessage]) -> dict[str, RecordFailure]:
        """Publish every message; return {key: failure} for those SNS did not accept (SenderFault: for good)."""
        if not messages:
            return {}
        try:
            topic_arn = self.topic_arn
        except (ClientError, BotoCoreError) as error:
            return call_failed("GetCallerIdentity", messages, error)
        batches = plan_batches(messages, SNS_MAX_BATCH_ENTRIES, MAX_BATCH_BYTES)
        return send_batches(self._executor, batches, lambda batch: self._publish_batch(topic_arn, batch))

    def key_problem(self, group: str) -> str:
        """A standard topic files messages under no key."""
        return ""

    def _publish_batch(self, topic_arn: str, batch: list[OutgoingMessage]) -> dict[str, RecordFailure]:
        # Entry ids only need to be unique within one call; positions keep them valid whatever the keys are.
        entries = [_entry(str(position), message) for position, message in enumerate(batch)]
        try:
            response = self._sns.publish_batch(TopicArn=topic_arn, PublishBatchRequestEntries=entries)
        except (ClientError, BotoCoreError) as error:
            return call_failed("PublishBatch", batch, error)
        return batch_entry_failures(batch, response)


def _entry(entry_id: str, message: OutgoingMessage) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": entry_id, "Message": message.body}
    if message.attributes:
        entry["MessageAttributes"] = {
            name: {"DataType": "String", "StringValue": value} for name, value in message.attributes.items()
        }
    return entry


def prediction_sink(executor: Executor) -> Sink:
    """The publisher for the topic named PREDICTIONS_TOPIC_NAME; its clients are created here, once."""
    return TopicPublisher(aws_client("sns"), aws_client("sts"), os.environ["PREDICTIONS_TOPIC_NAME"], executor)
