"""Runs the whole pipeline on this machine: emulator, local endpoint, Lambda-like trigger, app.py.

    python -m <package>.local_pipeline --count 300 --seed 7 --malformed-rate 0.02 --stage dev

Sends sample feature events to the features queue, lets the real handler turn them into
predictions through the local endpoint, then accounts for every sent message: it must end up
either on the predictions queue or on the dead-letter queue. Prints a summary; exits 1 when a
message was lost.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import math
import random
import sys
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import boto3
from chalice.app import SQSEventConfig

from .clickstream import sample_feature_events
from .emulator import VISIBILITY_TIMEOUT_SECONDS, PipelineQueues, create_pipeline_queues, local_aws_environment
from .endpoint_server import LocalEndpoint
from .lambda_trigger import FunctionConfiguration, SqsTrigger
from .stage import (
    HANDLER_NAME,
    PROJECT_DIR,
    StageSettings,
    UnknownStageError,
    load_stage,
    patched_environ,
    stage_environment,
)

# moto's SQS scans the whole queue on every send and receive, so a deep queue slows every call
# (about 10 ms per SendMessageBatch when empty, 140 ms at 1,000 messages), and each send wakes
# every long-polling poller to scan again. The sender therefore keeps at most this many messages
# unaccounted for. Measured with 2,000 events, batch size 10, concurrency 10 on 2 cores:
# 20 in flight 128 predictions/s, 30: 170-194, 50: 168-181, 70: 154-160, 100: 123, 200: 80.
MAX_IN_FLIGHT = 50
# Lambda starts this many concurrent batches when a trigger sets no maximum concurrency.
DEFAULT_CONCURRENCY = 5
SEND_BATCH_SIZE = 10


class ModelMissingError(FileNotFoundError):
    """The trained model is not there yet."""


@dataclass
class PipelineSummary:
    """What happened to the messages of one local run."""

    sent: int
    predicted: int
    dead_lettered: int
    duplicates: int
    lost: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    latency_p99_ms: float | None
    predictions_per_second: float
    elapsed_seconds: float
    invocations: int
    failed_batches: int
    # The prediction envelopes and the dead-letter queue's messages, for tests and inspection.
    predictions: list[dict[str, Any]] = field(default_factory=list, repr=False)
    dead_letters: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def table(self) -> str:
        """The summary as an aligned two-column table."""
        rows = [
            ("sent", str(self.sent)),
            ("predicted", str(self.predicted)),
            ("dead-lettered", str(self.dead_lettered)),
            ("duplicates", str(self.duplicates)),
            ("lost", str(self.lost)),
            ("latency p50", _milliseconds(self.latency_p50_ms)),
            ("latency p95", _milliseconds(self.latency_p95_ms)),
            ("latency p99", _milliseconds(self.latency_p99_ms)),
            ("throughput", f"{self.predictions_per_second:.1f} predictions/s"),
            ("elapsed", f"{self.elapsed_seconds:.1f} s"),
            ("invocations", f"{self.invocations} ({self.failed_batches} failed as a whole)"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def percentile(values: Sequence[float], percent: float) -> float | None:
    """Nearest-rank percentile; None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


@dataclass(frozen=True)
class SampleEvent:
    """One event to send: model input for an envelope, or None for a body that is not JSON."""

    event_id: str
    features: dict[str, Any] | None

    def body(self) -> str:
        """The message body, stamped with the time it is sent (the envelope's latency starts there)."""
        if self.features is None:
            return f"not json: {self.event_id}"
        event_time = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return json.dumps({"event_id": self.event_id, "event_time": event_time, "features": self.features})


def sample_events(count: int, seed: int, malformed_rate: float) -> list[SampleEvent]:
    """`count` events from the sample clickstream, a seeded fraction of them broken.

    Half the broken ones are not JSON at all; the other half are JSON the model rejects (k out
    of range), so both the handler's parsing and the endpoint's ModelError path are exercised.
    """
    rng = random.Random(seed)
    events = []
    for index, features in enumerate(sample_feature_events(count, seed)):
        if rng.random() < malformed_rate:
            features = dict(features, k=0) if rng.random() < 0.5 else None
        events.append(SampleEvent(event_id=f"evt-{seed}-{index:06d}", features=features))
    return events


class ProgressLine:
    """Progress on stderr: one redrawn line on a terminal, a plain line now and then otherwise."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self._total = total
        self._stream = stream
        self._interactive = bool(stream and stream.isatty())
        self._started = time.monotonic()
        self._last_shown = 0.0
        self._last_tenth = -1

    def show(self, sent: int, accounted: int) -> None:
        """Redraw at most ten times a second; without a terminal, every 10 % or 5 s."""
        if self._stream is None:
            return
        now = time.monotonic()
        tenth = accounted * 10 // max(self._total, 1)
        if self._interactive:
            if now - self._last_shown < 0.1 and accounted < self._total:
                return
        elif tenth == self._last_tenth and now - self._last_shown < 5:
            return
        self._last_shown, self._last_tenth = now, tenth
        line = self._line(sent, accounted, now - self._started)
        self._stream.write(f"\r{line}\x1b[K" if self._interactive else f"{line}\n")
        self._stream.flush()

    def close(self) -> None:
        """End the redrawn line so the summary starts on its own."""
        if self._stream is not None and self._interactive:
            self._stream.write("\n")
            self._stream.flush()

    def _line(self, sent: int, accounted: int, elapsed: float) -> str:
        rate = accounted / elapsed if elapsed > 0 else 0.0
        eta = f"{(self._total - accounted) / rate:.0f}s" if rate > 0 else "?"
        filled = accounted * 30 // max(self._total, 1)
        return (
            f"[{'#' * filled}{'.' * (30 - filled)}] {accounted}/{self._total} accounted for, "
            f"{sent} sent, {rate:.0f} msg/s, ETA {eta}"
        )


class Ledger:
    """Which sent messages have come out the other end, and how."""

    def __init__(self) -> None:
        self.sent_ids: set[str] = set()
        self.accounted: set[str] = set()
        self.duplicates = 0
        self.predictions: list[dict[str, Any]] = []
        self.dead_letters: list[dict[str, Any]] = []
        self.last_accounted_at = time.monotonic()

    @property
    def in_flight(self) -> int:
        return len(self.sent_ids) - len(self.accounted)

    def record_prediction(self, envelope: dict[str, Any]) -> None:
        if self._account(envelope.get("message_id")):
            self.predictions.append(envelope)

    def record_dead_letter(self, message: dict[str, Any]) -> None:
        # The handler names the features message; a message the queue's redrive moved keeps its id.
        source = message.get("MessageAttributes", {}).get("source_message_id", {}).get("StringValue")
        if self._account(source or message["MessageId"]):
            self.dead_letters.append(message)

    def _account(self, message_id: str | None) -> bool:
        # Messages this run did not send (left over in an external emulator's queues) are ignored.
        if message_id not in self.sent_ids:
            return False
        if message_id in self.accounted:
            self.duplicates += 1
            return False
        self.accounted.add(message_id)
        self.last_accounted_at = time.monotonic()
        return True


@contextmanager
def cold_started_handler(project_dir: Path) -> Iterator[Any]:
    """Import app.py afresh, as a Lambda cold start would, and yield the module.

    The handler reads its configuration from the environment when it is imported and first
    called, so an `app` imported earlier (by a test, or a previous run) would still point at
    another emulator. Earlier imports are put back afterwards.
    """
    saved = {name: module for name, module in sys.modules.items() if _is_app_module(name)}
    for name in saved:
        del sys.modules[name]
    added_path = str(project_dir) not in sys.path
    if added_path:
        sys.path.insert(0, str(project_dir))
    try:
        yield importlib.import_module("app")
    finally:
        for name in [name for name in sys.modules if _is_app_module(name)]:
            del sys.modules[name]
        sys.modules.update(saved)
        if added_path:
            sys.path.remove(str(project_dir))


def _is_app_module(name: str) -> bool:
    return name == "app" or name == "chalicelib" or name.startswith("chalicelib.")


def run_local_pipeline(
    count: int = 300,
    seed: int = 7,
    malformed_rate: float = 0.02,
    stage: str = "dev",
    *,
    project_dir: Path = PROJECT_DIR,
    model_dir: Path | None = None,
    endpoint_latency_ms: int = 0,
    visibility_timeout_seconds: int = VISIBILITY_TIMEOUT_SECONDS,
    stall_timeout_seconds: float | None = None,
    max_in_flight: int | None = None,
    progress: TextIO | None = sys.stderr,
) -> PipelineSummary:
    """Run the pipeline once and account for every message sent.

    The run waits until every sent message is a prediction or a dead letter, or until nothing
    new has come out for `stall_timeout_seconds` (by default long enough for one redelivery
    after the visibility timeout); what is still missing then counts as lost. `model_dir`
    defaults to the project's model/; `max_in_flight` to MAX_IN_FLIGHT, or two batches when the
    trigger's batch size is larger, so that batches can still fill.
    """
    model_dir = model_dir or project_dir / "model"
    if not (model_dir / "cooccurrence.json").exists():
        raise ModelMissingError(f"{model_dir / 'cooccurrence.json'} does not exist: run `make train` first")
    settings = load_stage(stage, project_dir)
    if stall_timeout_seconds is None:
        stall_timeout_seconds = visibility_timeout_seconds + settings.lambda_timeout + 10
    events = sample_events(count, seed, malformed_rate)
    with (
        stage_environment(settings),
        local_aws_environment(),
        LocalEndpoint(model_dir=model_dir, latency_ms=endpoint_latency_ms) as endpoint,
        patched_environ({"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": endpoint.url}),
    ):
        sqs = boto3.client("sqs")
        queues = create_pipeline_queues(
            sqs, settings.environment_variables, visibility_timeout_seconds=visibility_timeout_seconds
        )
        with cold_started_handler(project_dir) as app:
            mapping = _sqs_event_source(app)
            limit = max_in_flight or max(MAX_IN_FLIGHT, 2 * mapping.batch_size)
            with _local_trigger(app, mapping, settings, queues) as trigger:
                ledger, elapsed = _send_and_account(sqs, queues, events, limit, stall_timeout_seconds, progress)
            stats = trigger.stats
    latencies = [envelope["latency_ms"] for envelope in ledger.predictions if envelope.get("latency_ms") is not None]
    return PipelineSummary(
        sent=len(ledger.sent_ids),
        predicted=len(ledger.predictions),
        dead_lettered=len(ledger.dead_letters),
        duplicates=ledger.duplicates,
        lost=ledger.in_flight,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        latency_p99_ms=percentile(latencies, 99),
        predictions_per_second=len(ledger.predictions) / elapsed if elapsed > 0 else 0.0,
        elapsed_seconds=elapsed,
        invocations=stats.invocations,
        failed_batches=stats.failed_batches,
        predictions=ledger.predictions,
        dead_letters=ledger.dead_letters,
    )


def _sqs_event_source(app: Any) -> SQSEventConfig:
    """The SQS trigger app.py declares, so local mode polls exactly as the deployed mapping will."""
    for source in app.app.event_sources:
        if isinstance(source, SQSEventConfig) and source.name == HANDLER_NAME:
            return source
    raise RuntimeError(f"app.py declares no @app.on_sqs_message handler named {HANDLER_NAME}")


def _local_trigger(app: Any, mapping: SQSEventConfig, settings: StageSettings, queues: PipelineQueues) -> SqsTrigger:
    return SqsTrigger(
        app.handle_feature_events,
        queue_url=queues.features_url,
        function=FunctionConfiguration(
            function_name=settings.function_name,
            timeout_seconds=settings.lambda_timeout,
            memory_size_mb=settings.lambda_memory_size,
        ),
        batch_size=mapping.batch_size,
        batching_window_seconds=mapping.maximum_batching_window_in_seconds,
        maximum_concurrency=mapping.maximum_concurrency or DEFAULT_CONCURRENCY,
    )


def _send_and_account(
    sqs: Any,
    queues: PipelineQueues,
    events: list[SampleEvent],
    max_in_flight: int,
    stall_timeout_seconds: float,
    progress: TextIO | None,
) -> tuple[Ledger, float]:
    """Send every event while reading both output queues; return the ledger and the seconds taken."""
    ledger = Ledger()
    started = ledger.last_accounted_at
    unsent = deque(events)
    progress_line = ProgressLine(len(events), progress)
    try:
        while unsent or (ledger.in_flight and time.monotonic() - ledger.last_accounted_at < stall_timeout_seconds):
            while unsent and ledger.in_flight < max_in_flight:
                _send_batch(sqs, queues.features_url, unsent, ledger)
            _drain(sqs, queues, ledger)
            progress_line.show(len(ledger.sent_ids), len(ledger.accounted))
    finally:
        progress_line.close()
    return ledger, ledger.last_accounted_at - started


def _send_batch(sqs: Any, queue_url: str, unsent: deque[SampleEvent], ledger: Ledger) -> None:
    batch = [unsent.popleft() for _ in range(min(SEND_BATCH_SIZE, len(unsent)))]
    response = sqs.send_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(position), "MessageBody": event.body()} for position, event in enumerate(batch)],
    )
    ledger.sent_ids.update(entry["MessageId"] for entry in response.get("Successful", []))
    # Entries SQS refused were not sent: they go back to the front and are tried again.
    unsent.extendleft(reversed([batch[int(entry["Id"])] for entry in response.get("Failed", [])]))


def _drain(sqs: Any, queues: PipelineQueues, ledger: Ledger) -> None:
    # Sending is done or paused at the in-flight limit here, so waiting for output costs nothing.
    for message in _receive_and_delete(sqs, queues.predictions_url, wait_seconds=1):
        ledger.record_prediction(json.loads(message["Body"]))
    for message in _receive_and_delete(sqs, queues.dead_letter_url, wait_seconds=0):
        ledger.record_dead_letter(message)


def _receive_and_delete(sqs: Any, queue_url: str, *, wait_seconds: int) -> list[dict[str, Any]]:
    messages = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds, MessageAttributeNames=["All"]
    ).get("Messages", [])
    if messages:
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(position), "ReceiptHandle": m["ReceiptHandle"]} for position, m in enumerate(messages)],
        )
    return messages


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the pipeline, print the summary, exit 1 if a message was lost."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="feature events to send (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="seed for the sample events (default 7)")
    parser.add_argument("--malformed-rate", type=float, default=0.02, help="fraction of broken bodies (default 0.02)")
    parser.add_argument("--stage", default="dev", help="Chalice stage whose settings to run with (default dev)")
    parser.add_argument("--latency-ms", type=int, default=0, help="extra latency per endpoint call (default 0)")
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=VISIBILITY_TIMEOUT_SECONDS,
        help=f"features queue visibility timeout in seconds (default {VISIBILITY_TIMEOUT_SECONDS})",
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        default=Path("local-handler.log"),
        help="where the handler's JSON log lines go, so they do not break the progress bar (default local-handler.log)",
    )
    args = parser.parse_args(argv)
    # In Lambda these lines go to CloudWatch Logs; here they go to a file beside the summary.
    logging.basicConfig(filename=args.log_file, filemode="w", level=logging.INFO, format="%(message)s")
    try:
        summary = run_local_pipeline(
            args.count,
            args.seed,
            args.malformed_rate,
            args.stage,
            endpoint_latency_ms=args.latency_ms,
            visibility_timeout_seconds=args.visibility_timeout,
        )
    except (ModelMissingError, UnknownStageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary.table())
    print(f"handler log    {args.log_file}")
    if summary.lost:
        print(f"{summary.lost} message(s) lost: neither predicted nor dead-lettered", file=sys.stderr)
    return 1 if summary.lost else 0


if __name__ == "__main__":
    sys.exit(main())
