# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The prediction destination: an SQS queue that one consumer (or one group of workers) reads.

What it guarantees: every accepted prediction is delivered at least once. A standard queue keeps
no order; a FIFO queue (its name ends in .fifo) keeps the order of each message group (the
source record's group) and drops a prediction published again within five minutes, because its
de-duplication id is the source record's message id. Consumers drop the duplicates that remain
on the envelope's message_id.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor

from .publishing import QueuePublisher, Sink, aws_client

# SQS takes messages of up to 1 MiB, message attributes included.
MAX_MESSAGE_BYTES = 1_048_576


def prediction_sink(executor: Executor) -> Sink:
    """The publisher for the queue named PREDICTIONS_QUEUE_NAME; its client is created here, once."""
    queue_name = os.environ["PREDICTIONS_QUEUE_NAME"]
    return QueuePublisher(aws_client("sqs"), queue_name, executor, fifo=queue_name.endswith(".fifo"))
