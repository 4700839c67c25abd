# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Local mode's SQS standard source: the queues it creates, what its producer sends, how dead letters map back."""

import json

import boto3
import pytest
from moto import mock_aws

from template_tools.emulator import Redelivery
from template_tools.source import EventSender, create_source, dead_lettered_message_ids, record_message_id

ENVIRONMENT = {"FEATURES_QUEUE_NAME": "features-test", "DEAD_LETTER_QUEUE_NAME": "dead-letters-test"}


@pytest.fixture
def sqs(aws_credentials):
    with mock_aws():
        yield boto3.client("sqs")


def test_the_features_queue_redrives_to_the_dead_letter_queue_and_creating_it_again_changes_nothing(sqs):
    """Local runs are repeated against one emulator: a second create_source must leave one pair of queues."""
    first = create_source(ENVIRONMENT, Redelivery(max_receive_count=3, visibility_timeout_seconds=7))
    second = create_source(ENVIRONMENT, Redelivery(max_receive_count=3, visibility_timeout_seconds=7))

    assert first == second
    assert len(sqs.list_queues()["QueueUrls"]) == 2
    attributes = sqs.get_queue_attributes(QueueUrl=first.url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "7"
    dead_letter_arn = sqs.get_queue_attributes(QueueUrl=first.dead_letter_url, AttributeNames=["QueueArn"])
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dead_letter_arn["Attributes"]["QueueArn"],
        "maxReceiveCount": 3,
    }


def test_without_a_receive_limit_the_queue_keeps_failing_records(sqs):
    """The naive handler's soak runs without a dead-letter queue, as Sagify deploys it."""
    create_source(ENVIRONMENT, Redelivery(max_receive_count=3))
    source = create_source(ENVIRONMENT, Redelivery(max_receive_count=None))

    attributes = sqs.get_queue_attributes(QueueUrl=source.url, AttributeNames=["All"])["Attributes"]
    assert not attributes.get("RedrivePolicy")


def test_the_sender_returns_the_message_ids_the_handler_will_be_given(sqs):
    """The ledger tracks what the sender returns; it must be the id on the Lambda record."""
    source = create_source(ENVIRONMENT, Redelivery())
    message_ids = EventSender(source).send(["a", "b"], ["", ""])

    received = sqs.receive_message(QueueUrl=source.url, MaxNumberOfMessages=10)["Messages"]
    assert sorted(message_ids) == sorted(message["MessageId"] for message in received)
    assert record_message_id({"messageId": message_ids[0], "body": "a"}) == message_ids[0]


def test_a_dead_letter_stands_for_the_record_it_names_or_for_itself():
    """The handler's dead letters name their record; a redriven message is the record."""
    handler_sent = {"MessageId": "dlq-1", "MessageAttributes": {"source_message_id": {"StringValue": "m-1"}}}
    redriven = {"MessageId": "m-2", "Body": "poison"}

    assert dead_lettered_message_ids(handler_sent, {"m-1", "m-2"}) == ["m-1"]
    assert dead_lettered_message_ids(redriven, {"m-1", "m-2"}) == ["m-2"]
