# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Local mode's SQS FIFO source: FIFO queues, each event in its key's group, and order kept end to end."""

import json
import threading
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from template_tools.emulator import Redelivery
from template_tools.fault_plan import FaultInjection, FaultPlan, PlannedEvent
from template_tools.features_producer import producer_key_field
from template_tools.local_pipeline import EXERCISE_TRIGGER_LIMITS, run_local_pipeline
from template_tools.source import EventSender, create_source, dead_lettered_message_ids, record_body
from template_tools.stage import patched_environ

from .echo_inputs import KEY_FIELD, echo_input
from .timing import scaled_timings

ENVIRONMENT = {"FEATURES_QUEUE_NAME": "features-test.fifo", "DEAD_LETTER_QUEUE_NAME": "dead-letters-test.fifo"}
# The visibility timeout outlasts the function timeout (a FIFO trigger has no batching window)
# with room to spare, so no record comes back while its invocation still runs, even on a loaded
# machine: that would put two deliveries of one group in flight at once. Scaled: see timing.py.
TIMINGS = scaled_timings(visibility_timeout_seconds=8, max_receive_count=3, function_timeout_seconds=6)
# What producers key an event by, as the features producer does: the stage's PARTITION_KEY_FIELD
# when it sets one, the project's answer otherwise.
GROUP_FIELD = producer_key_field({"PARTITION_KEY_FIELD": KEY_FIELD})


@pytest.fixture
def sqs(aws_credentials):
    with mock_aws():
        yield boto3.client("sqs")


def test_both_queues_are_fifo_and_the_features_queue_redrives_to_the_dead_letter_queue(sqs):
    """AWS requires a FIFO queue's dead-letter queue to be FIFO too."""
    source = create_source(ENVIRONMENT, Redelivery(max_receive_count=3, visibility_timeout_seconds=7))

    for url in (source.url, source.dead_letter_url):
        assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["FifoQueue"])["Attributes"]["FifoQueue"] == "true"
    policy = sqs.get_queue_attributes(QueueUrl=source.url, AttributeNames=["RedrivePolicy"])["Attributes"]
    assert json.loads(policy["RedrivePolicy"])["maxReceiveCount"] == 3
    assert create_source(ENVIRONMENT, Redelivery(max_receive_count=3, visibility_timeout_seconds=7)) == source


def test_the_sender_puts_each_event_in_its_keys_group_and_a_resend_is_deduplicated(sqs):
    """The group is what keeps order; the event id as deduplication id makes a producer retry harmless."""
    source = create_source(ENVIRONMENT, Redelivery())
    sender = EventSender(source)
    bodies = [json.dumps({"event_id": f"e-{n}", "features": {}}) for n in range(3)]
    first = sender.send(bodies, ["u-1", "u-2", "u-1"])
    sender.send(bodies[:1], ["u-1"])

    response = sqs.receive_message(QueueUrl=source.url, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"])
    received = response["Messages"]
    # The resent event is not in the queue twice.
    groups = {message["MessageId"]: message["Attributes"]["MessageGroupId"] for message in received}
    assert groups == {first[0]: "u-1", first[1]: "u-2", first[2]: "u-1"}
    assert {message["Attributes"]["MessageDeduplicationId"] for message in received} == {"e-0", "e-1", "e-2"}


def test_a_dead_letter_stands_for_the_record_it_names_or_for_itself():
    """The handler's dead letters name their record; a redriven message is the record."""
    handler_sent = {"MessageId": "dlq-1", "MessageAttributes": {"source_message_id": {"StringValue": "m-1"}}}
    assert dead_lettered_message_ids(handler_sent, {"m-1"}) == ["m-1"]
    assert dead_lettered_message_ids({"MessageId": "m-2"}, {"m-2"}) == ["m-2"]


@dataclass
class GroupedEvent:
    """A planned event sent in a chosen group: `features` is what the producer keys it by."""

    planned: PlannedEvent
    group: str

    @property
    def event_id(self) -> str:
        return self.planned.event_id

    @property
    def features(self) -> dict[str, Any]:
        return {GROUP_FIELD: self.group}

    def body(self) -> str:
        return self.planned.body()


class DeliveryOrder:
    """The event ids of every delivery, in the order the handler was invoked."""

    def __init__(self) -> None:
        self.deliveries: list[str] = []
        self._lock = threading.Lock()

    def wrap(self, handler):
        def invoke(event, context):
            with self._lock:
                self.deliveries.extend(json.loads(record_body(record))["event_id"] for record in event["Records"])
            return handler(event, context)

        return invoke


@pytest.mark.slow
def test_a_failure_mid_group_holds_back_the_rest_of_its_group_and_no_other_group(model_dir, tmp_path):
    """FIFO's promise end to end: a later event of a group is never published before an earlier one."""
    # Echo model inputs, each under a key of its own, so that a keyed table keeps every prediction.
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(echo_input(number)) + "\n" for number in range(10)), encoding="utf-8")
    plan = FaultPlan.healthy(10, TIMINGS, samples_path=samples)
    failing = plan.events[2]
    # The destination refuses its first prediction: that record alone fails.
    failing.fault, failing.times = "sink_refused", 1
    events = [GroupedEvent(event, "group-a" if n % 2 == 0 else "group-b") for n, event in enumerate(plan.events)]
    group_a = [event.event_id for event in events if event.group == "group-a"]
    group_b = [event.event_id for event in events if event.group == "group-b"]
    order = DeliveryOrder()
    injection = FaultInjection(plan)
    with patched_environ(TIMINGS.handler_environment()), injection as hooks:
        inner = hooks.wrap_handler
        summary = run_local_pipeline(
            len(events),
            model_dir=model_dir,
            visibility_timeout_seconds=TIMINGS.visibility_timeout_seconds,
            stall_timeout_seconds=30,
            progress=None,
            events=events,
            max_receive_count=TIMINGS.max_receive_count,
            function_timeout_seconds=TIMINGS.function_timeout_seconds,
            hooks=replace(hooks, wrap_handler=lambda handler: order.wrap(inner(handler))),
            settle=True,
            maximum_concurrency=2,
            trigger_limits=EXERCISE_TRIGGER_LIMITS,
        )

    assert (summary.lost, summary.predicted, summary.dead_lettered, summary.duplicates) == (0, 10, 0, 0)
    published = {envelope["event_id"]: envelope for envelope in summary.predictions}
    # Within group A, no prediction is older than the one of an earlier event: the events after
    # the failing one were held back and predicted with it, or after it.
    times = [published[event_id]["prediction_time"] for event_id in group_a]
    assert times == sorted(times)
    # The failing event came back, and the last (published) delivery of each group A event
    # comes after that of the event before it.
    assert order.deliveries.count(failing.event_id) == 2
    last_delivery = {event_id: position for position, event_id in enumerate(order.deliveries)}
    assert [last_delivery[event_id] for event_id in group_a] == sorted(last_delivery[event_id] for event_id in group_a)
    # Group B was not held back: each of its events was delivered once, in order.
    assert [event_id for event_id in order.deliveries if event_id in group_b] == group_b
