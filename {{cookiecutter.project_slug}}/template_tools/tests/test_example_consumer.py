# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""examples/consume_predictions.py works as its docstring says, run as a consumer would run it."""

import json
import os
import subprocess
import sys

import boto3

from template_tools.stage import PROJECT_DIR

from .sample_envelopes import sample_envelope

EXAMPLE = PROJECT_DIR / "examples" / "consume_predictions.py"
QUEUE_NAME = "{{ cookiecutter.project_slug }}-consumer-example"


def run_example() -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLE), "--queue", QUEUE_NAME, "--wait-seconds", "1"],
        cwd=PROJECT_DIR,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_example_prints_each_prediction_once_and_deletes_what_it_handled(moto_server):
    """Two predictions, a redelivered copy of the first and a body that is no envelope."""
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    first, second = sample_envelope("msg-1", 1), sample_envelope("msg-2", 2)
    for body in (first, second, first):
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))
    sqs.send_message(QueueUrl=queue_url, MessageBody='{"not": "an envelope"}')

    run = run_example()

    assert run.returncode == 0, run.stderr
    printed = [json.loads(line) for line in run.stdout.splitlines()]
    # A standard queue does not keep order; each prediction is printed once, whichever copy came first.
    assert sorted(printed, key=lambda e: e["message_id"]) == [first, second]
    assert "duplicate dropped: msg-1" in run.stderr
    assert "not a prediction envelope" in run.stderr
    assert "2 predictions" in run.stderr
    # The predictions and the duplicate are deleted; the stranger stays for the redrive policy.
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    left = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
    assert left == 1


def test_the_example_drops_the_prediction_of_a_redriven_record_as_a_duplicate(moto_server):
    """`make redrive` sends a record again as a new message: its prediction has a new message_id
    but the event's event_id, which is what the example drops duplicates on."""
    sqs = boto3.client("sqs")
    queue_url = sqs.create_queue(QueueName=QUEUE_NAME)["QueueUrl"]
    first = sample_envelope("msg-1", 1)
    redriven = first | {"message_id": "msg-9", "prediction_time": "2026-11-26T08:00:00.000Z"}
    for body in (first, redriven):
        sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(body))

    run = run_example()

    assert run.returncode == 0, run.stderr
    assert [json.loads(line)["event_id"] for line in run.stdout.splitlines()] == ["msg-1"]
    assert "duplicate dropped: msg-1" in run.stderr
