"""Read predictions off the SQS predictions queue: what a consuming team writes, in a few lines.

    python examples/consume_predictions.py --queue {{ cookiecutter.predictions_destination_name }}

Each message is one prediction envelope, checked against schemas/prediction-envelope.schema.json.
Delivery is at least once: a Lambda invocation that dies after publishing is run again, and an
operator's `make redrive` or `make replay` sends records again, so the same prediction can arrive
twice. Its `event_id` is the same on every copy (`message_id` is not: a redriven record is a new
message), so drop the event ids already seen (in production keep them in a store with a TTL, not
in memory). Set
AWS_ENDPOINT_URL to read from a local emulator instead of AWS. This is the SQS destination; the
README shows how to read the others (an SNS topic, a Kinesis stream, the DynamoDB read API).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import boto3
import fastjsonschema

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "schemas" / "prediction-envelope.schema.json").read_text())
validate = fastjsonschema.compile(SCHEMA)


def consume(queue_name: str, *, wait_seconds: int = 20, seen: set[str] | None = None) -> list[dict]:
    """Long-poll the queue until it stays empty for wait_seconds; return the new envelopes."""
    sqs = boto3.client("sqs")
    queue_url = sqs.get_queue_url(QueueName=queue_name)["QueueUrl"]
    seen = set() if seen is None else seen
    envelopes = []
    poll = {"QueueUrl": queue_url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": wait_seconds}
    while messages := sqs.receive_message(**poll).get("Messages", []):
        for message in messages:
            try:
                envelope = validate(json.loads(message["Body"]))
            except (ValueError, fastjsonschema.JsonSchemaException) as error:
                # Left on the queue: after its redrive count it moves to your dead-letter queue.
                print(f"not a prediction envelope ({error}): {message['MessageId']}", file=sys.stderr)
                continue
            if envelope["event_id"] in seen:
                print(f"duplicate dropped: {envelope['event_id']}", file=sys.stderr)
            else:
                seen.add(envelope["event_id"])
                envelopes.append(envelope)
                print(json.dumps(envelope))
            # Delete only once the envelope is handled: a crash before this means a redelivery.
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return envelopes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
{%- if cookiecutter.output_destination == "sns" %}
    # Each consuming team subscribes a queue of its own to the topic (raw message delivery).
    parser.add_argument("--queue", required=True, help="your queue subscribed to the predictions topic")
{%- else %}
    parser.add_argument("--queue", default="{{ cookiecutter.predictions_destination_name }}", help="queue name")
{%- endif %}
    parser.add_argument("--wait-seconds", type=int, default=20, help="stop after this long with no message (0-20)")
    args = parser.parse_args()
    envelopes = consume(args.queue, wait_seconds=args.wait_seconds)
    print(f"{len(envelopes)} predictions", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
