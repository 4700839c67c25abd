# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""An AWS emulator on 127.0.0.1 for local mode, and the SQS queues every pipeline has in it."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from chalicelib.template_runtime.settings import MAX_RECEIVE_COUNT as MAX_RECEIVE_COUNT_VARIABLE

from .child_server import ChildServer
from .stage import PROJECT_DIR, load_stage, patched_environ


def _deployed_settings() -> tuple[str, int, float]:
    """The region and the features source's redelivery settings deploy/config.json gives AWS.

    Local mode mirrors them. A stream source has no visibility timeout there: it gets six
    function timeouts of the dev stage, the rule the template suggests for a queue (and unused by
    a stream's trigger).
    """
    config = json.loads((PROJECT_DIR / "deploy" / "config.json").read_text(encoding="utf-8"))
    queues = config["queues"]
    visibility = queues.get("visibility_timeout_seconds") or 6 * load_stage("dev").lambda_timeout
    return config["region"], int(queues["max_receive_count"]), float(visibility)


REGION, MAX_RECEIVE_COUNT, VISIBILITY_TIMEOUT_SECONDS = _deployed_settings()
# A standard queue keeps a message's first enqueue time when it moves to the dead-letter queue,
# so the dead-letter queue keeps messages for the longest time SQS allows.
DEAD_LETTER_RETENTION_SECONDS = 14 * 24 * 3600


class MotoServer(ChildServer):
    """moto's server in a child process, bound to a free port on 127.0.0.1.

    Why a child process rather than moto's ThreadedMotoServer in this one: the trigger's
    pollers, the handler and the local endpoint already compete for this process's GIL, and
    moto spends a lot of CPU per SQS call (it scans the whole queue), so in its own process it
    gets the other core: a local run is then faster, and moto's process is the busy one.
    """

    def __init__(self) -> None:
        super().__init__("moto server", [sys.executable, "-m", __name__, "--serve-until-stdin-closes"], PROJECT_DIR)


@contextmanager
def local_aws_environment(region: str = REGION) -> Iterator[str]:
    """Point boto3 at an AWS emulator until the block ends, and yield the emulator's URL.

    AWS_ENDPOINT_URL is the one setting that says where AWS is: when it is already set (another
    emulator, a shared one), it is used as is and credentials are left alone. Otherwise a moto
    server is started for the block, with dummy credentials so that no real account is touched.
    """
    existing = os.environ.get("AWS_ENDPOINT_URL")
    if existing:
        with patched_environ({"AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or region}):
            yield existing
        return
    with MotoServer() as server, patched_environ(_emulator_variables(server.url, region)):
        yield server.url


def _emulator_variables(url: str, region: str) -> dict[str, str | None]:
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_DEFAULT_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        # A session token or profile from the developer's shell would mix real identity in.
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
    }


@dataclass(frozen=True)
class Redelivery:
    """How the features source gives a failing record another try, and when it gives up on it."""

    # Deliveries before the record goes to the dead-letter queue (an SQS redrive policy's
    # maxReceiveCount; a Kinesis trigger's MaximumRetryAttempts + 1). None: it keeps coming back.
    max_receive_count: int | None = MAX_RECEIVE_COUNT
    # How long a delivered SQS record stays invisible before it may come back. A fraction of a
    # second is scaled time for tests: see queue_visibility_timeout_seconds.
    visibility_timeout_seconds: float = VISIBILITY_TIMEOUT_SECONDS

    def handler_environment(self) -> dict[str, str | None]:
        """What the handler is told of this redelivery, as the stack tells the deployed function
        (deploy/source.py function_environment): the receives after which a record is dead-lettered,
        so that on its last one the handler dead-letters it with its reason. For patched_environ:
        None removes the variable, when records keep coming back."""
        receives = self.max_receive_count
        return {MAX_RECEIVE_COUNT_VARIABLE: None if receives is None else str(receives)}

    @property
    def queue_visibility_timeout_seconds(self) -> int:
        """The timeout the queue itself gets. SQS takes whole seconds (VisibilityTimeout is an integer
        from 0 to 43,200 in SetQueueAttributes and ChangeMessageVisibility): a fractional timeout
        is rounded up past it on the queue, and the local trigger ends each record's on time itself."""
        whole = math.ceil(self.visibility_timeout_seconds)
        return whole if whole == self.visibility_timeout_seconds else whole + 1


def ensure_queue(sqs: Any, name: str, **attributes: str) -> str:
    """Create a queue, or bring an existing one up to date, and return its URL; idempotent.

    A name ending in .fifo makes a FIFO queue, as AWS requires. Attributes are set after
    CreateQueue, not passed to it, because CreateQueue refuses an existing queue whose
    attributes differ.
    """
    creation = {"FifoQueue": "true"} if name.endswith(".fifo") else {}
    url = sqs.create_queue(QueueName=name, Attributes=creation)["QueueUrl"]
    if attributes:
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def ensure_dead_letter_queue(sqs: Any, name: str) -> str:
    """The dead-letter queue (FIFO when its name says so), keeping messages as long as SQS allows."""
    return ensure_queue(sqs, name, MessageRetentionPeriod=str(DEAD_LETTER_RETENTION_SECONDS))


def queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def receive_and_delete(sqs: Any, url: str, wait_seconds: int = 0) -> list[dict[str, Any]]:
    """Up to 10 messages of a queue, with every attribute, deleted once received."""
    messages = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        WaitTimeSeconds=wait_seconds,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    ).get("Messages", [])
    if messages:
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(position), "ReceiptHandle": m["ReceiptHandle"]} for position, m in enumerate(messages)],
        )
    return messages


def serve(until_stdin_closes: bool) -> None:
    """Run moto on a free port of 127.0.0.1, print its URL on one line, and serve."""
    from moto.server import ThreadedMotoServer

    # werkzeug logs every request, and a traceback whenever moto's SQS answers 500 because two
    # concurrent receives raced inside moto ("Set changed size during iteration"). botocore
    # retries those 500s like any AWS 5xx, so they cost a retry, not a message; printed, they
    # would drown the pipeline's progress and summary.
    logging.getLogger("werkzeug").setLevel(logging.CRITICAL)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    try:
        if until_stdin_closes:
            # The parent holds our stdin open; EOF means it stopped us or died.
            sys.stdin.read()
        else:
            threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: start the emulator for use with AWS_ENDPOINT_URL from other shells."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--serve-until-stdin-closes", action="store_true", help="exit when stdin reaches EOF (used by MotoServer)"
    )
    args = parser.parse_args(argv)
    serve(until_stdin_closes=args.serve_until_stdin_closes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
