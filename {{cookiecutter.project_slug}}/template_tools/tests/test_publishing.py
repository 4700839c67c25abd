# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Batched publishing to SQS: the batch limits, exact reporting of entries SQS refused, FIFO groups."""

import json

import boto3
import pytest
from moto import mock_aws

from chalicelib.template_runtime.aws_limits import SQS_MAX_BATCH_BYTES
from chalicelib.template_runtime.publishing import OutgoingMessage, QueuePublisher, plan_batches
from template_tools.sink_faults import refuse_send_entries


def test_batches_hold_at_most_ten_entries():
    """SendMessageBatch refuses an eleventh entry."""
    messages = [OutgoingMessage(key=str(n), body="{}") for n in range(23)]
    batches = plan_batches(messages)
    assert [len(batch) for batch in batches] == [10, 10, 3]
    assert [m.key for batch in batches for m in batch] == [m.key for m in messages]


def test_batches_stay_under_one_mebibyte_counting_attributes():
    """SQS counts attributes against the 1 MiB batch limit, so they must be counted here too."""
    big = "x" * (SQS_MAX_BATCH_BYTES // 3)
    messages = [OutgoingMessage(key=str(n), body=big, attributes={"error_code": "InvalidJson"}) for n in range(4)]
    batches = plan_batches(messages)
    assert [len(batch) for batch in batches] == [2, 2]
    assert all(sum(m.size() for m in batch) <= SQS_MAX_BATCH_BYTES for batch in batches)


def test_batches_follow_the_limits_and_the_size_they_are_given():
    """Each destination has its own limits and counts bytes its own way (Kinesis: data plus partition key)."""
    messages = [OutgoingMessage(key=str(n), body="x" * 100, group="g" * 50) for n in range(7)]
    batches = plan_batches(messages, max_entries=3, max_bytes=320, size=lambda m: len(m.body) + len(m.group))
    assert [len(batch) for batch in batches] == [2, 2, 2, 1]
    assert [len(batch) for batch in plan_batches(messages, max_entries=3, max_bytes=10_000)] == [3, 3, 1]


def test_a_message_too_large_for_any_batch_travels_alone():
    """An oversize message then fails on its own instead of taking its neighbours with it."""
    messages = [
        OutgoingMessage("a", "{}"),
        OutgoingMessage("b", "x" * (SQS_MAX_BATCH_BYTES + 1)),
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
    assert all("InternalError" in failure.reason for failure in failed.values())
    assert sorted(m["Body"] for m in drain(sqs, publisher.queue_url)) == sorted(
        f"body-{n}" for n in range(12) if n not in (3, 11)
    )


def test_a_missing_queue_fails_every_message_instead_of_raising(aws_credentials, executor):
    """Publishers report failures for the caller to retry; an exception would fail the whole Lambda batch."""
    with mock_aws():
        publisher = QueuePublisher(boto3.client("sqs", region_name="eu-west-1"), "missing", executor)
        failed = publisher.send([OutgoingMessage("a", "{}"), OutgoingMessage("b", "{}")])
    assert set(failed) == {"a", "b"}
    assert all("GetQueueUrl" in failure.reason for failure in failed.values())


@pytest.fixture
def fifo_queue(sqs):
    return sqs.create_queue(QueueName="predictions.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]


def test_a_fifo_queue_gets_each_message_s_group_and_its_key_as_deduplication_id(sqs, fifo_queue, executor):
    """FIFO order holds per MessageGroupId; a message without a group is a group of its own."""
    publisher = QueuePublisher(sqs, "predictions.fifo", executor, fifo=True)
    messages = [
        OutgoingMessage(key="m-1", body="1", group="user-a"),
        OutgoingMessage(key="m-2", body="2", group="user-b"),
        OutgoingMessage(key="m-3", body="3"),
    ]
    assert publisher.send(messages) == {}
    received = {m["Body"]: m["Attributes"] for m in drain(sqs, fifo_queue)}
    assert {body: (a["MessageGroupId"], a["MessageDeduplicationId"]) for body, a in received.items()} == {
        "1": ("user-a", "m-1"),
        "2": ("user-b", "m-2"),
        "3": ("m-3", "m-3"),
    }


def test_a_message_published_twice_reaches_a_fifo_queue_once(sqs, fifo_queue, executor):
    """A record retried after its prediction was already published must not be predicted twice downstream."""
    publisher = QueuePublisher(sqs, "predictions.fifo", executor, fifo=True)
    message = OutgoingMessage(key="m-1", body="1", group="user-a")
    assert publisher.send([message]) == {}
    assert publisher.send([message]) == {}
    assert [m["Body"] for m in drain(sqs, fifo_queue)] == ["1"]


def test_a_group_spanning_several_batches_keeps_its_order_in_a_fifo_queue(sqs, fifo_queue, executor):
    """Batches run concurrently; one group's later batch must still not overtake its earlier one."""
    publisher = QueuePublisher(sqs, "predictions.fifo", executor, fifo=True)
    messages = [OutgoingMessage(key=f"m-{n}", body=str(n), group="user-a") for n in range(35)]
    assert publisher.send(messages) == {}
    assert [m["Body"] for m in drain(sqs, fifo_queue)] == [str(n) for n in range(35)]


def drain(sqs, queue_url: str) -> list[dict]:
    messages = []
    while batch := sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], AttributeNames=["All"]
    ).get("Messages", []):
        messages.extend(batch)
        # A FIFO queue hands out no more of a group while some of it is in flight.
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)],
        )
    return messages
