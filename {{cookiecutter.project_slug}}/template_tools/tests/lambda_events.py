# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Lambda events as the {% if cookiecutter.input_source == "kinesis" %}Kinesis{% elif cookiecutter.input_source == "sqs-fifo" %}SQS FIFO{% else %}SQS{% endif %} trigger delivers them, built with the Chalice test client."""
{% if cookiecutter.input_source == "kinesis" %}
import base64
{%- endif %}
import copy
import json
import time

from chalice.test import Client

from template_tools.source import record_body

from .echo_inputs import echo_input


{%- if cookiecutter.input_source == "kinesis" %}


def lambda_event(client: Client, bodies: list[str], groups: list[str] | None = None) -> dict:
    """One shard's records with increasing sequence numbers; `groups` are their partition keys."""
    event = client.events.generate_kinesis_event(message_bodies=[b.encode() for b in bodies], stream_name="features")
    for number, record in enumerate(event["Records"]):
        sequence = f"4962{number:06d}"
        record["kinesis"]["sequenceNumber"] = sequence
        record["kinesis"]["partitionKey"] = groups[number] if groups else f"key-{number}"
        record["kinesis"]["approximateArrivalTimestamp"] = time.time()
        record["eventID"] = f"shardId-000000000000:{sequence}"
    return event


def failure_id(record: dict) -> str:
    """What the partial batch response names to retry a record: its sequence number."""
    return record["kinesis"]["sequenceNumber"]


def message_id(record: dict) -> str:
    """What the envelope and the dead-letter record call the record: its eventID."""
    return record["eventID"]


def _set_body(record: dict, body: str) -> None:
    record["kinesis"]["data"] = base64.b64encode(body.encode()).decode()
{%- else %}


def lambda_event(client: Client, bodies: list[str], groups: list[str] | None = None) -> dict:
    """Records with distinct message ids{% if cookiecutter.input_source == "sqs-fifo" %}; `groups` are their MessageGroupIds{% endif %}."""
    event = client.events.generate_sqs_event(message_bodies=bodies, queue_name="features")
    for number, record in enumerate(event["Records"]):
        record["messageId"] = f"msg-{number}"
        record["attributes"]["SentTimestamp"] = str(int(time.time() * 1000))
{%- if cookiecutter.input_source == "sqs-fifo" %}
        record["attributes"]["MessageGroupId"] = groups[number] if groups else f"group-{number}"
{%- endif %}
    return event


def failure_id(record: dict) -> str:
    """What the partial batch response names to retry a record: its message id."""
    return record["messageId"]


def message_id(record: dict) -> str:
    """What the envelope and the dead-letter record call the record: its message id."""
    return record["messageId"]


def _set_body(record: dict, body: str) -> None:
    record["body"] = body
{%- endif %}


def with_echo_inputs(event: dict) -> dict:
    """A copy of a sample event (events/) whose model inputs are the echo model's.

    The sample events are the team's, written for its model; this keeps everything else of them:
    the records' metadata, each body's form (a bare input or a producer envelope around one), and
    the bodies that are not JSON at all.
    """
    event = copy.deepcopy(event)
    for number, record in enumerate(event["Records"]):
        try:
            document = json.loads(record_body(record))
        except ValueError:
            continue
        if isinstance(document, dict) and isinstance(document.get("features"), dict):
            document["features"] = echo_input(number)
        else:
            document = echo_input(number)
        _set_body(record, json.dumps(document))
    return event
