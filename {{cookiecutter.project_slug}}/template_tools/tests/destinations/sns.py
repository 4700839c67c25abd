# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The SNS prediction destination: PublishBatch within its limits, exact failures, attributes subscribers filter on."""

import json

import boto3
import pytest
from moto import mock_aws

from chalicelib.template_runtime.destination import MAX_MESSAGE_BYTES, prediction_sink
from chalicelib.template_runtime.publishing import OutgoingMessage
from template_tools.deploy.names import QUEUE_NAME
from template_tools.destination import PredictionReader, create_destination, refuse_predictions, tail_queue_name
from template_tools.sink_faults import fail_calls
from template_tools.stage import stage_environment


@pytest.fixture
def environment(aws_credentials, stage):
    """The dev stage's environment, with its predictions topic (and the topic's tail queue) in moto."""
    with mock_aws(), stage_environment(stage):
        create_destination(stage.environment_variables)
        yield stage.environment_variables


@pytest.fixture
def session_events(environment):
    """The default session's events: handlers registered here reach the sink's client."""
    boto3.setup_default_session()
    return boto3.DEFAULT_SESSION.events


def prediction(n: int, body_bytes: int = 0, model_version: str = "7") -> OutgoingMessage:
    body = json.dumps({"message_id": f"m-{n}", "padding": "x" * body_bytes})
    attributes = {"schema_version": "1.0", "model_version": model_version, "endpoint_name": "recommender-dev"}
    return OutgoingMessage(key=f"m-{n}", body=body, attributes=attributes)


def subscribed_queue(environment, name: str, filter_policy: dict | None = None) -> str:
    """A queue subscribed to the predictions topic with raw delivery, optionally filtering."""
    sns, sqs = boto3.client("sns"), boto3.client("sqs")
    topic_arn = sns.create_topic(Name=environment["PREDICTIONS_TOPIC_NAME"])["TopicArn"]
    queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    attributes = {"RawMessageDelivery": "true"}
    if filter_policy is not None:
        attributes["FilterPolicy"] = json.dumps(filter_policy)
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
    return queue_url


def drain(queue_url: str) -> list[dict]:
    sqs = boto3.client("sqs")
    messages = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]).get(
        "Messages", []
    ):
        messages.extend(batch)
    return messages


def test_a_batch_larger_than_one_call_is_split_and_every_prediction_arrives(environment, session_events, executor):
    """PublishBatch takes 10 entries and 256 KiB (moto checks only the entries); a bigger batch must be split."""
    calls: list[list[dict]] = []
    session_events.register(
        "provide-client-params.sns.PublishBatch", lambda params, **_: calls.append(params["PublishBatchRequestEntries"])
    )
    reader = PredictionReader(environment)
    # 40 KB each: more than six would pass 256 KiB in one call, though ten entries are allowed.
    messages = [prediction(n, 40_000) for n in range(20)] + [prediction(n) for n in range(20, 45)]
    assert prediction_sink(executor).send(messages) == {}
    assert sorted(envelope["message_id"] for envelope in reader.read()) == sorted(m.key for m in messages)
    assert all(len(entries) <= 10 and payload_bytes(entries) <= 262_144 for entries in calls)
    assert max(payload_bytes(entries) for entries in calls) > 200_000


def payload_bytes(entries: list[dict]) -> int:
    """What SNS counts against 256 KiB: each message and its attributes' names, types and values."""
    return sum(
        len(entry["Message"].encode())
        + sum(
            len(name) + len(value["DataType"]) + len(value["StringValue"].encode())
            for name, value in entry.get("MessageAttributes", {}).items()
        )
        for entry in entries
    )


def test_one_refused_prediction_is_reported_and_the_rest_arrive(environment, session_events, executor):
    """A partial PublishBatch failure must name exactly the refused message."""
    reader = PredictionReader(environment)
    messages = [prediction(n) for n in range(12)]
    with refuse_predictions(session_events, lambda entry: '"m-4"' in entry["body"]):
        failed = prediction_sink(executor).send(messages)
    assert list(failed) == ["m-4"]
    assert "InternalError" in failed["m-4"].reason
    assert sorted(envelope["message_id"] for envelope in reader.read()) == sorted(
        m.key for m in messages if m.key != "m-4"
    )


def test_a_failed_call_fails_each_of_its_predictions_and_only_those(environment, session_events, executor):
    """A call that fails whole must report its messages, not raise and not take other calls down."""
    reader = PredictionReader(environment)
    messages = [prediction(n) for n in range(15)]
    with fail_calls(
        session_events,
        "sns.PublishBatch",
        lambda params: any('"m-12"' in entry["Message"] for entry in params["PublishBatchRequestEntries"]),
    ):
        failed = prediction_sink(executor).send(messages)
    assert set(failed) == {f"m-{n}" for n in range(10, 15)}
    assert sorted(envelope["message_id"] for envelope in reader.read()) == sorted(f"m-{n}" for n in range(10))


def test_a_missing_topic_fails_every_prediction_instead_of_raising(aws_credentials, stage, executor):
    """The handler turns failures into retries; an exception would fail the whole Lambda batch."""
    with mock_aws(), stage_environment(stage):
        failed = prediction_sink(executor).send([prediction(1), prediction(2)])
    assert set(failed) == {"m-1", "m-2"}
    assert all("PublishBatch" in failure.reason for failure in failed.values())


def test_subscribers_filter_predictions_on_their_message_attributes(environment, executor):
    """Teams subscribe to one model version without reading every prediction."""
    current = subscribed_queue(environment, "current-model", {"model_version": ["7"]})
    other = subscribed_queue(environment, "other-model", {"model_version": ["8"]})
    assert prediction_sink(executor).send([prediction(1), prediction(2, model_version="8")]) == {}
    received = drain(current)
    assert [json.loads(m["Body"])["message_id"] for m in received] == ["m-1"]
    assert {name: value["StringValue"] for name, value in received[0]["MessageAttributes"].items()} == {
        "schema_version": "1.0",
        "model_version": "7",
        "endpoint_name": "recommender-dev",
    }
    assert [json.loads(m["Body"])["message_id"] for m in drain(other)] == ["m-2"]


def test_a_prediction_of_the_largest_size_the_handler_lets_through_is_accepted(environment, executor):
    """The handler dead-letters predictions above MAX_MESSAGE_BYTES; anything up to it must publish."""
    reader = PredictionReader(environment)
    largest = prediction(1, MAX_MESSAGE_BYTES - prediction(1).size())
    assert largest.size() == MAX_MESSAGE_BYTES
    assert prediction_sink(executor).send([largest]) == {}
    assert [envelope["message_id"] for envelope in reader.read()] == ["m-1"]


def test_creating_the_destination_twice_leaves_one_topic_and_one_tail_subscription(environment):
    """Local mode creates it on every run, against an emulator that may already have it."""
    create_destination(environment)
    sns = boto3.client("sns")
    assert len(sns.list_topics()["Topics"]) == 1
    subscriptions = sns.list_subscriptions()["Subscriptions"]
    assert len(subscriptions) == 1
    attributes = sns.get_subscription_attributes(SubscriptionArn=subscriptions[0]["SubscriptionArn"])["Attributes"]
    assert attributes["RawMessageDelivery"] == "true"


def test_a_topic_name_too_long_for_a_tail_queue_gets_a_queue_name_sqs_takes(aws_credentials):
    """Topic names take 256 characters, queue names 80: a long topic's `<topic>-tail` is cut and
    hashed, and two topics that differ only at the end keep tail queues of their own."""
    long_topic = "predictions-" + "t" * 230
    tails = {tail_queue_name(long_topic + end) for end in ("a", "b")}
    assert len(tails) == 2
    assert all(QUEUE_NAME.fullmatch(name) for name in tails)
    assert tail_queue_name("predictions-dev") == "predictions-dev-tail"
    with mock_aws():
        create_destination({"PREDICTIONS_TOPIC_NAME": long_topic + "a"})
        assert boto3.client("sqs").get_queue_url(QueueName=tail_queue_name(long_topic + "a"))["QueueUrl"]
