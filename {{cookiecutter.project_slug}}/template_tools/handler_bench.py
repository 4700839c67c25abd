# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Drives the handlers with Lambda events as the source delivers them: wall time per batch, AWS calls, CPU.

Three handlers are measured the same way: app.py in batch mode (RECORDS_PER_ENDPOINT_CALL=100),
app.py in per-record mode (RECORDS_PER_ENDPOINT_CALL=1), and naive_handler (Sagify's way). Each
is warmed up with one invocation first, as a Lambda process that has served a request is, so
the figures are steady state: a cold start adds one client creation per service and the
lookups of queue URLs (or the topic ARN), once per process.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import naive_handler
from .api_call_counter import ApiCallCounter
from .cost import HandlerUsage
from .features_producer import producer_key_field
from .lambda_trigger import FunctionConfiguration, LambdaContext
from .model_samples import SAMPLES_FILE, draw_samples
from .source import lambda_records

HANDLERS = ("batch", "per_record", "naive")
RECORDS_PER_CALL = {"batch": "100", "per_record": "1"}
# What the template gives a per-record project, so a batch of 10 goes out in one wave of calls.
PER_RECORD_CONCURRENCY = "10"
# The batch size the call counts and CPU time are taken at: Lambda's default SQS batch size.
REFERENCE_BATCH_SIZE = 10
# Enough distinct records that a batch of 100 never repeats one.
SAMPLE_RECORDS = 500

# The calls that publish a prediction or a dead letter, whatever the destination: SQS (the
# dead-letter queue always), SNS, Kinesis or DynamoDB, one record or a batch at a time.
PUBLISH_OPERATIONS = frozenset(
    {
        ("sqs", "SendMessage"),
        ("sqs", "SendMessageBatch"),
        ("sns", "Publish"),
        ("sns", "PublishBatch"),
        ("kinesis", "PutRecord"),
        ("kinesis", "PutRecords"),
        ("dynamodb", "PutItem"),
    }
)

Handler = Callable[[dict[str, Any], Any], Any]


def call_kind(service: str, operation: str) -> str:
    """Which column of the call table an API call belongs to: invoke, publish or other."""
    if service == "sagemaker-runtime" and operation == "InvokeEndpoint":
        return "invoke"
    if (service, operation) in PUBLISH_OPERATIONS:
        return "publish"
    return "other"


@dataclass
class HandlerFigures:
    """What one handler measured."""

    latency_ms_by_batch_size: dict[int, float]
    calls_per_1000: dict[str, float]
    get_queue_url_per_1000: float
    # What the cost table prices: the handler's work for its records at the trigger's batch size.
    usage: HandlerUsage | None = None
    cpu_ms_per_record: float | None = None


class HandlerBench:
    """Runs one handler at a time against the emulator and an endpoint, reading the destination empty."""

    def __init__(
        self,
        app: Any,
        predictions: Any,
        features_arn: str,
        function: FunctionConfiguration,
        counter: ApiCallCounter,
        per_record_concurrency: str = PER_RECORD_CONCURRENCY,
        samples_path: Path = SAMPLES_FILE,
        log_path: Path | None = None,
    ) -> None:
        """`predictions` (a PredictionReader) must have made its clients before `counter` was
        attached, so that emptying the destination is not counted. The records are model inputs
        drawn from `samples_path`; the stage's environment must be in place (its PARTITION_KEY_FIELD
        keys them). `log_path` is the file the handler's log and metric lines go to, whose growth
        is the log volume the cost table prices."""
        self._concurrency = {
            "batch": os.environ.get("ENDPOINT_CONCURRENCY") or "4",
            "per_record": per_record_concurrency,
        }
        self._app = app
        self._predictions = predictions
        self._features_arn = features_arn
        self._region = features_arn.split(":")[3]
        self._function = function
        self._counter = counter
        features = draw_samples(SAMPLE_RECORDS, seed=11, path=samples_path)
        self._bodies = [json.dumps(record) for record in features]
        self._log_path = log_path
        self._dead_letter_queue = os.environ.get("DEAD_LETTER_QUEUE_NAME", "")
        # What a producer keys each event by (a FIFO message group, a Kinesis partition key), as
        # local_pipeline.event_key does.
        key_field = producer_key_field(dict(os.environ))
        self._groups = [
            str(record.get(key_field) if key_field and record.get(key_field) not in (None, "") else f"event-{n}")
            for n, record in enumerate(features)
        ]
        self._next_body = 0

    @property
    def bodies(self) -> list[str]:
        """The record bodies the benchmark sends: JSON model inputs."""
        return list(self._bodies)

    def use(self, name: str, endpoint_url: str) -> Handler:
        """Configure the environment for handler `name`, drop cached clients, warm it up, return it."""
        os.environ["AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME"] = endpoint_url
        if name in RECORDS_PER_CALL:
            os.environ["RECORDS_PER_ENDPOINT_CALL"] = RECORDS_PER_CALL[name]
            os.environ["ENDPOINT_CONCURRENCY"] = self._concurrency[name]
        self._app.batch_processor.cache_clear()
        naive_handler.reset_clients()
        handler: Handler = naive_handler.handle_feature_events if name == "naive" else self._app.handle_feature_events
        self.invoke(handler, REFERENCE_BATCH_SIZE)
        return handler

    def invoke(self, handler: Handler, size: int) -> tuple[float, float]:
        """Invoke once with `size` fresh records; return (wall seconds, CPU seconds) of the call alone."""
        event = self._event(size)
        context = LambdaContext(self._function, self._region, "000000000000")
        cpu_started = time.process_time()
        started = time.perf_counter()
        response = handler(event, context)
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        if response and response.get("batchItemFailures"):
            raise RuntimeError(f"the handler failed records of a clean batch: {response['batchItemFailures']}")
        # moto scans the whole queue on every send: an output queue left to fill would slow each
        # later batch, so the destination is read empty between invocations, outside the timed part.
        # Reading it back also shows that the predictions got there.
        if not self._predictions.read():
            raise RuntimeError(f"a batch of {size} left no prediction in the destination")
        return wall, cpu

    def measure(
        self,
        name: str,
        endpoint_url: str,
        batch_sizes: Sequence[int],
        repeats: Callable[[int], int],
        cost_batch_size: int = REFERENCE_BATCH_SIZE,
    ) -> HandlerFigures:
        """Median wall time per batch size, the API calls made at the reference batch size, and
        what the cost table needs at `cost_batch_size` (the trigger's batch size; one of `batch_sizes`)."""
        handler = self.use(name, endpoint_url)
        latency: dict[int, float] = {}
        calls: Counter[tuple[str, str]] = Counter()
        records = 0
        usage = None
        for size in batch_sizes:
            self._counter.reset()
            self._counter.measure_units = size == cost_batch_size
            log_start = self._log_size()
            try:
                walls = [self.invoke(handler, size)[0] for _ in range(repeats(size))]
            finally:
                self._counter.measure_units = False
            latency[size] = statistics.median(walls) * 1000
            if size == REFERENCE_BATCH_SIZE:
                calls = self._counter.snapshot()
                records = size * len(walls)
            if size == cost_batch_size:
                usage = self._usage(size * len(walls), latency[size], log_start)
        if not records:
            raise ValueError(f"batch sizes must include {REFERENCE_BATCH_SIZE}, the size calls are counted at")
        per_kind: Counter[str] = Counter()
        for (service, operation), count in calls.items():
            per_kind[call_kind(service, operation)] += count
        scale = 1000 / records
        return HandlerFigures(
            latency_ms_by_batch_size=latency,
            calls_per_1000={kind: per_kind[kind] * scale for kind in ("invoke", "publish", "other")},
            get_queue_url_per_1000=calls[("sqs", "GetQueueUrl")] * scale,
            usage=usage,
        )

    def _usage(self, records: int, wall_ms: float, log_start: int) -> HandlerUsage:
        """The billing units counted and the log written since `log_start`, for `records` records."""
        destination = dead_letter = 0.0
        for (service, operation, queue), units in self._counter.units_snapshot().items():
            if queue and queue == self._dead_letter_queue:
                dead_letter += units
            elif call_kind(service, operation) == "publish":
                destination += units
        log_bytes, log_events = self._log_written_since(log_start)
        return HandlerUsage(
            records=records,
            wall_ms_per_invocation=wall_ms,
            source_record_bytes=statistics.fmean(len(body.encode("utf-8")) for body in self._bodies),
            destination_units=destination,
            dead_letter_units=dead_letter,
            log_bytes=log_bytes,
            log_events=log_events,
        )

    def _log_size(self) -> int:
        if self._log_path is None:
            return 0
        # The handler's print() lines go through sys.stdout (the log file while the benchmark runs).
        sys.stdout.flush()
        return self._log_path.stat().st_size

    def _log_written_since(self, start: int) -> tuple[int, int]:
        """Bytes and lines the handler wrote to the log file since `start`."""
        if self._log_path is None:
            return 0, 0
        self._log_size()
        with self._log_path.open("rb") as log:
            log.seek(start)
            written = log.read()
        return len(written), written.count(b"\n")

    def cpu_ms_per_record(self, name: str, endpoint_url: str, invocations: int) -> float:
        """Process CPU time inside the handler per record, with the endpoint in another process."""
        handler = self.use(name, endpoint_url)
        cpu = sum(self.invoke(handler, REFERENCE_BATCH_SIZE)[1] for _ in range(invocations))
        return cpu * 1000 / (invocations * REFERENCE_BATCH_SIZE)

    def _event(self, size: int) -> dict[str, Any]:
        picked = [self._next_body + offset for offset in range(size)]
        self._next_body += size
        bodies = [self._bodies[number % len(self._bodies)] for number in picked]
        groups = [self._groups[number % len(self._groups)] for number in picked]
        return {"Records": lambda_records(bodies, groups, self._features_arn, self._region)}
