"""Batched publishing to SQS: the batch limits, and exact reporting of entries SQS refused."""

import json

import boto3
import pytest
from moto import mock_aws

from chalicelib.publishing import MAX_BATCH_BYTES, OutgoingMessage, QueuePublisher, plan_batches
from {{ cookiecutter.package_name }}.sink_faults import refuse_send_entries


def test_batches_hold_at_most_ten_entries():
    """SendMessageBatch refuses an eleventh entry."""
    messages = [OutgoingMessage(key=str(n), body="{}") for n in range(23)]
    batches = plan_batches(messages)
    assert [len(batch) for batch in batches] == [10, 10, 3]
    assert [m.key for batch in batches for m in batch] == [m.key for m in messages]


def test_batches_stay_under_one_mebibyte_counting_attributes():
    """SQS counts attributes against the 1 MiB batch limit, so they must be counted here too."""
    big = "x" * (MAX_BATCH_BYTES // 3)
    messages = [OutgoingMessage(key=str(n), body=big, attributes={"error_code": "InvalidJson"}) for n in range(4)]
    batches = plan_batches(messages)
    assert [len(batch) for batch in batches] == [2, 2]
    assert all(sum(m.size() for m in batch) <= MAX_BATCH_BYTES for batch in batches)


def test_a_message_too_large_for_any_batch_travels_alone():
    """An oversize message then fails on its own instead of taking its neighbours with it."""
    messages = [
        OutgoingMessage("a", "{}"),
        OutgoingMessage("b", "x" * (MAX_BATCH_BYTES + 1)),
        OutgoingMessage("c", "{}"),
    ]
    assert [[m.key for m in batch] for batch in plan_batches(messages)] == [["a"], ["b"], ["c"]]


@pytest.fixture
def sqs(aws_credentials):
    with mock_aws():
        client = boto3.client("sqs", region_name="eu-west-1")
        client.create_queue(QueueName="predictions")
        yield client


def test_every_message_arrives_with_its_attributes(sqs, executor):
    """Publishing in batches must not lose or alter a message."""
    publisher = QueuePublisher(sqs, "predictions", executor)
    messages = [
        OutgoingMessage(key=f"k{n}", body=json.dumps({"n": n}), attributes={"model_version": "7"}) for n in range(25)
    ]
    assert publisher.send(messages) == {}
    received = drain(sqs, publisher.queue_url)
    assert sorted(m["Body"] for m in received) == sorted(m.body for m in messages)
    assert {m["MessageAttributes"]["model_version"]["StringValue"] for m in received} == {"7"}


def test_entries_the_queue_refuses_are_reported_by_key_and_the_rest_are_sent(sqs, executor):
    """A partial SendMessageBatch failure must name exactly the refused messages, never report them sent."""
    publisher = QueuePublisher(sqs, "predictions", executor)
    messages = [OutgoingMessage(key=f"k{n}", body=f"body-{n}") for n in range(12)]
    with refuse_send_entries(sqs.meta.events, lambda entry: entry["MessageBody"] in {"body-3", "body-11"}):
        failed = publisher.send(messages)
    assert set(failed) == {"k3", "k11"}
    assert all("InternalError" in reason for reason in failed.values())
    assert sorted(m["Body"] for m in drain(sqs, publisher.queue_url)) == sorted(
        f"body-{n}" for n in range(12) if n not in (3, 11)
    )


def drain(sqs, queue_url: str) -> list[dict]:
    messages = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
        "Messages", []
    ):
        messages.extend(batch)
    return messages
