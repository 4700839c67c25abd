# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Knows when an invocation must stop calling the endpoint so it can still publish and answer in time.

Lambda stops a function at its timeout, and a batch whose function timed out counts as failed
as a whole: SQS delivers every record again after the visibility timeout, and Kinesis retries the
batch, so predictions already published are published again and healthy records use up their
deliveries ("Configure Lambda function timeout" and "Handling errors for an SQS event source in
Lambda" in the Lambda developer guide:
https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html,
https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html).

So an invocation's time is split in two. Until the deadline, DEADLINE_RESERVE_MS before the
timeout, it calls the endpoint: every attempt's timeouts end by the deadline (endpoint.py). The
reserve is for publishing and answering: every publishing call's timeouts and attempts fit in
it (`publishing_budget`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

# Room for two publishing attempts of 0.7 s, the wait between them, and answering.
DEFAULT_RESERVE_MS = 3000
# The least a function timeout should leave before the reserve to call the endpoint in: a
# connection (endpoint.CONNECT_TIMEOUT_SECONDS) and an answer. `make deploy` refuses less, and so
# does the template for its default reserve (hooks/pre_gen_project.py).
MIN_ENDPOINT_SHARE_MS = 2000
# The share of the reserve kept for what follows publishing: logging the batch and answering.
ANSWER_SHARE = 0.2
# The longest botocore's standard retry mode waits before a second attempt: a random time up to
# 1 s (boto3 guide, "Retries": https://docs.aws.amazon.com/boto3/latest/guide/retries.html).
RETRY_WAIT_SECONDS = 1.0
# A publishing attempt is retried only when both attempts still get this long; below it, one
# longer attempt rides out a slow answer better than two short ones.
RETRIED_PUBLISH_ATTEMPT_SECONDS = 0.5
# Less than this per attempt and a busy service's answer would not arrive in time.
MIN_PUBLISH_ATTEMPT_SECONDS = 0.3


class LambdaContext(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class Deadline:
    """The point, DEADLINE_RESERVE_MS before Lambda's timeout, by which every endpoint call has ended.

    Records not predicted by then are reported as batch item failures, so the source delivers them
    again, instead of Lambda stopping the invocation and failing the whole batch.
    """

    def __init__(self, context: LambdaContext | None, reserve_ms: int) -> None:
        remaining_ms = context.get_remaining_time_in_millis() if context is not None else None
        self._timeout_at = None if remaining_ms is None else time.monotonic() + remaining_ms / 1000
        self._stop_at = None if self._timeout_at is None else self._timeout_at - reserve_ms / 1000
        self._publishing_call_seconds = publishing_call_seconds(reserve_ms)

    def seconds_left(self) -> float:
        """Seconds until the deadline (negative once passed); infinite without a Lambda context."""
        return math.inf if self._stop_at is None else self._stop_at - time.monotonic()

    def time_for_another_publishing_call(self) -> bool:
        """Whether a publishing call that takes its longest would still leave the answer its share.

        The reserve holds one such call; publishing in rounds (an ordered source's) makes calls one
        after another, and a slow destination could otherwise carry the last ones past the timeout.
        """
        return self._timeout_at is None or self._timeout_at - time.monotonic() >= self._publishing_call_seconds


@dataclass(frozen=True)
class CallBudget:
    """The timeouts (seconds) and attempts of an AWS client's calls.

    The longest a call can take is every attempt timing out, plus the wait before each retry.
    """

    connect_seconds: float
    read_seconds: float
    attempts: int


def publishing_call_seconds(reserve_ms: int) -> float:
    """The longest one publishing call may take, its attempts and the wait between them: the
    reserve less the answer's share."""
    return reserve_ms / 1000 * (1 - ANSWER_SHARE)


def publishing_budget(reserve_ms: int) -> CallBudget:
    """Timeouts and attempts for a publishing call whose worst case fits in the deadline reserve.

    botocore's defaults (60 s connect and read timeouts, retried) would outlast any Lambda
    timeout; within a region these services answer in milliseconds. Raises ValueError when the
    reserve cannot hold one attempt of MIN_PUBLISH_ATTEMPT_SECONDS.
    """
    seconds = publishing_call_seconds(reserve_ms)
    attempts = 2 if (seconds - RETRY_WAIT_SECONDS) / 2 >= RETRIED_PUBLISH_ATTEMPT_SECONDS else 1
    attempt = (seconds - (attempts - 1) * RETRY_WAIT_SECONDS) / attempts
    if attempt < MIN_PUBLISH_ATTEMPT_SECONDS:
        shortest_ms = math.ceil(MIN_PUBLISH_ATTEMPT_SECONDS / (1 - ANSWER_SHARE) * 1000)
        raise ValueError(f"too short to publish a batch and answer; it must be at least {shortest_ms} ms")
    # A connection within a region takes milliseconds: most of the attempt is left for the answer.
    return CallBudget(connect_seconds=attempt / 3, read_seconds=attempt * 2 / 3, attempts=attempts)
