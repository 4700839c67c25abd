# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Predictions per second one endpoint worker serves, batched calls against one record a call.

Micro-batching's other saving: the model server spends less per prediction on parsing, its HTTP
round trip and the model's fixed cost per call, so an instance serves more predictions an hour.
Calls go one at a time, so the local endpoint's single model worker is always busy and never
queued; the endpoint's latency is 0 ms so only its work is timed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.template_runtime.endpoint import PayloadCodec

ENDPOINT_NAME = "capacity"


@dataclass(frozen=True)
class WorkerRate:
    """Predictions per second through one worker, with `records_per_call` records in each call."""

    records_per_call: int
    predictions: int
    seconds: float

    @property
    def predictions_per_second(self) -> float:
        return self.predictions / self.seconds


def measure_worker_rate(
    endpoint_url: str,
    records: Sequence[dict[str, Any]],
    records_per_call: int,
    content_type: str,
    min_seconds: float = 1.0,
) -> WorkerRate:
    """Send `records` in calls of `records_per_call`, one call at a time, after one warm-up call;
    go through them again until `min_seconds` have passed, so a fast mode is timed over more
    than a handful of calls."""
    codec = PayloadCodec(content_type)
    runtime = boto3.client(
        "sagemaker-runtime",
        endpoint_url=endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )
    encoded = [codec.encode_record(record) for record in records]
    starts = range(0, len(encoded), records_per_call)
    bodies = [codec.join(encoded[start : start + records_per_call]) for start in starts]
    _invoke(runtime, bodies[0], content_type)
    started = time.perf_counter()
    predictions = 0
    while not predictions or time.perf_counter() - started < min_seconds:
        for body in bodies:
            _invoke(runtime, body, content_type)
        predictions += len(encoded)
    return WorkerRate(records_per_call, predictions, time.perf_counter() - started)


def _invoke(runtime: Any, body: bytes, content_type: str) -> None:
    response = runtime.invoke_endpoint(
        EndpointName=ENDPOINT_NAME, ContentType=content_type, Accept=content_type, Body=body
    )
    answer = response["Body"].read()
    if not answer:
        raise RuntimeError("the endpoint answered an empty body")


def capacity_records(bodies: Sequence[str], count: int) -> list[dict[str, Any]]:
    """`count` model inputs, cycling through the benchmark's record bodies."""
    return [json.loads(bodies[number % len(bodies)]) for number in range(count)]
