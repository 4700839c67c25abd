# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Lambda events as the {% if cookiecutter.input_source == "kinesis" %}Kinesis{% elif cookiecutter.input_source == "sqs-fifo" %}SQS FIFO{% else %}SQS{% endif %} trigger delivers them, built with the Chalice test client."""

import time

from chalice.test import Client


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
{%- endif %}
