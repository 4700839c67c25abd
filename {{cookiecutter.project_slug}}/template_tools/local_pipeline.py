# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Runs the whole pipeline on this machine: emulator, local endpoint, Lambda-like trigger, app.py.

    python -m template_tools.local_pipeline --count 300 --seed 7 --malformed-rate 0.02 --stage dev [--file events.jsonl]

Sends feature events to the features source, lets the real handler turn them into predictions
through the local endpoint, then accounts for every sent message: it must end up either in the
predictions destination or in the dead-letter queue, or (a table destination) be superseded: its
prediction was not stored because the table already held a newer one for its key. Prints a
summary; exits 1 when a message was lost.

The events' model inputs are drawn from model/samples.jsonl, or from `--file`: JSON Lines of the
team's own events, each a model input or an envelope (whose `features` is taken). Each is sent
in a fresh envelope. A seeded fraction (`--malformed-rate`) is broken on purpose, half of them
not JSON at all, half JSON that breaks the model's own input schema (model/code/input.schema.json),
so the handler's refusals show up in the dead-letter queue. The local endpoint serves the model
in model/; when it cannot load it, the run stops with the model's own error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import math
import random
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

import boto3
import fastjsonschema
from chalice.app import BaseEventSourceConfig

from chalicelib.template_runtime.endpoint import PayloadCodec

from .destination import PredictionReader, create_destination
from .emulator import (
    MAX_RECEIVE_COUNT,
    VISIBILITY_TIMEOUT_SECONDS,
    Redelivery,
    local_aws_environment,
    receive_and_delete,
)
from .endpoint_server import LocalEndpoint
from .features_producer import producer_key_field
from .lambda_trigger import FunctionConfiguration, Handler
from .model_samples import SAMPLES_FILE, SamplesError, draw_samples
from .operator_progress import ProgressLine
from .source import (
    MAX_EVENTS_PER_SEND,
    EventSender,
    FeaturesSource,
    create_source,
    dead_lettered_message_ids,
    local_trigger,
)
from .stage import (
    HANDLER_NAME,
    PROJECT_DIR,
    UnknownStageError,
    load_stage,
    patched_environ,
    stage_environment,
)

# moto's SQS scans the whole queue on every send and receive, so a deep queue slows every call
# (about 10 ms per SendMessageBatch when empty, 140 ms at 1,000 messages), and so does each of
# the pollers' receives. The sender therefore keeps at most this many messages unaccounted for:
# enough to keep ten pollers busy, few enough that moto stays fast (fewer starve the pollers,
# more slow every call; `make bench` measures the throughput).
MAX_IN_FLIGHT = 50
# Lambda starts this many concurrent batches when a trigger sets no maximum concurrency.
DEFAULT_CONCURRENCY = 5
# The malformed share of a run's events is split evenly between these two ways of breaking a body.
MALFORMED_VARIANTS = ("not_json", "schema")
# A value of each JSON type, to give a declared property one its schema does not allow.
WRONG_TYPE_VALUES: tuple[Any, ...] = ({"_wrong_type": True}, ["_wrong_type"], "_wrong_type", 1.5, True, None)


class EndpointStartError(RuntimeError):
    """The local endpoint could not serve the model (inference.py failed to import, or model_fn failed)."""


def model_input_schema_path(model_dir: Path) -> Path:
    """Where a model directory keeps the JSON Schema of its input."""
    return model_dir / "code" / "input.schema.json"


def input_text(features: Any) -> str:
    """A model input exactly as the handler writes it into an InvokeEndpoint body (either content
    type): what an endpoint fault matches a record by."""
    return PayloadCodec.encode_record(features).decode("utf-8")


def load_input_schema(path: Path) -> dict[str, Any] | None:
    """The model's input schema, or None when the model has none (no schema-breaking bodies then)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return document if isinstance(document, dict) else None


def schema_breaking(features: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """A model input that breaks the model's own input schema, made from a valid one; None when
    no such input can be made.

    In order: the input without one of its required fields, or with a declared property set to
    a value of a type the schema refuses; each is checked against the schema, and the first that
    really breaks it is taken (the handler refuses it as SchemaViolation). With no schema, or one
    that none of these breaks, None: the caller then sends JSON that is not an object
    (InvalidInput), the one shape every model input schema here refuses.
    """
    if schema is None:
        return None
    validate = fastjsonschema.compile(schema)
    for candidate in _schema_breaking_candidates(features, schema):
        try:
            validate(candidate)
        except fastjsonschema.JsonSchemaException:
            return candidate
    return None


def not_an_object(body: str) -> str:
    """JSON that is not an object, around a body: the handler refuses it as InvalidInput."""
    return f"[{body}]"


def _schema_breaking_candidates(features: dict[str, Any], schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for name in schema.get("required", []):
        if name in features:
            yield {key: value for key, value in features.items() if key != name}
    properties = schema.get("properties")
    for name in properties if isinstance(properties, dict) else ():
        for value in WRONG_TYPE_VALUES:
            yield dict(features, **{name: value})


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
    # Events never sent because the run stalled with the in-flight limit reached.
    unsent: int = 0
    # Messages still in the features queue when the run ended (retention would drop them).
    stranded: int = 0
    # Records handed to the handler, redeliveries included.
    deliveries: int = 0
    # Every arrival per message id, for the soak's exact ledger.
    ledger: Ledger | None = field(default=None, repr=False)
    # Messages whose prediction was not stored because a newer one of their key already was.
    superseded: int | None = None
    # Invocations the trigger stopped at the function timeout (counted in failed_batches too).
    timed_out: int = 0

    def table(self) -> str:
        """The summary as an aligned two-column table."""
        rows = [
            ("sent", str(self.sent)),
            ("predicted", str(self.predicted)),
            ("dead-lettered", str(self.dead_lettered)),
            *([("superseded", str(self.superseded))] if self.superseded is not None else []),
            ("duplicates", str(self.duplicates)),
            ("lost", str(self.lost)),
            ("latency p50", _milliseconds(self.latency_p50_ms)),
            ("latency p95", _milliseconds(self.latency_p95_ms)),
            ("latency p99", _milliseconds(self.latency_p99_ms)),
            ("throughput", f"{self.predictions_per_second:.1f} predictions/s"),
            ("elapsed", f"{self.elapsed_seconds:.1f} s"),
            ("invocations", f"{self.invocations} ({self.failed_batches} failed as a whole)"),
        ]
        # Only a run that went wrong has these; a clean run's table stays as it always was.
        rows += [
            (name, str(value))
            for name, value in (("timed out", self.timed_out), ("unsent", self.unsent), ("stranded", self.stranded))
            if value
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


class OutgoingEvent(Protocol):
    """What the pipeline sends: an id for the ledger, the model input (None if it has none) and the body."""

    event_id: str
    features: dict[str, Any] | None

    def body(self) -> str: ...


def event_key(event: OutgoingEvent, key_field: str) -> str:
    """The key a producer sends the event under (FIFO message group, Kinesis partition key): its
    model input's `key_field` (features_producer.producer_key_field), or its id when it has none."""
    value = event.features.get(key_field) if key_field and isinstance(event.features, dict) else None
    return str(value) if value not in (None, "") else event.event_id


def event_time_ms(body: str) -> int | None:
    """The event time a body carries in its envelope, in epoch milliseconds; None when it has none."""
    try:
        document = json.loads(body)
        return int(datetime.fromisoformat(document["event_time"]).timestamp() * 1000)
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class PipelineHooks:
    """Where a fault-injection run (the soak, the fault tests) plugs into the pipeline; all optional."""

    # Called once the local endpoint serves and the queues exist, before the first event is sent.
    endpoint_ready: Callable[[LocalEndpoint], None] | None = None
    # Given app.handle_feature_events, returns the handler the trigger invokes instead.
    wrap_handler: Callable[[Handler], Handler] | None = None
    # Called after each batch of events is sent, with how many have been sent so far.
    events_sent: Callable[[int], None] | None = None
    # For predictions that are not envelopes (a foreign handler's): the event id one belongs to.
    prediction_event_id: Callable[[Any], str | None] | None = None


def envelope_body(event_id: str, features: Any) -> str:
    """An envelope around `features`, stamped with the time it is made (the envelope's latency starts there)."""
    event_time = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return json.dumps({"event_id": event_id, "event_time": event_time, "features": features}, ensure_ascii=False)


@dataclass
class SampleEvent:
    """One event to send: a model input in an envelope, or a body broken on purpose.

    `broken` is "" for a well-formed event, "not_json" for a body cut off mid-way, or "schema"
    for an envelope whose `features` is `broken_features` (see schema_breaking; None: the
    envelope inside a JSON array). `features` is always the input the event was made from, which
    it is keyed by.
    """

    event_id: str
    features: dict[str, Any]
    broken: str = ""
    broken_features: dict[str, Any] | None = None
    _body: str | None = field(default=None, repr=False, compare=False)

    def body(self) -> str:
        """The message body, made when first asked: stamped with the time it is sent."""
        if self._body is None:
            self._body = self._make_body()
        return self._body

    def _make_body(self) -> str:
        if self.broken == "schema":
            if self.broken_features is None:
                return not_an_object(envelope_body(self.event_id, self.features))
            return envelope_body(self.event_id, self.broken_features)
        body = envelope_body(self.event_id, self.features)
        if self.broken == "not_json":
            # Cut off mid-way, as a producer that crashed while writing would leave it.
            return body[: len(body) * 2 // 3]
        return body

    @property
    def expected_code(self) -> str | None:
        """The error code the handler dead-letters this event with; None when it should be predicted."""
        if self.broken == "not_json":
            return "InvalidJson"
        if self.broken == "schema":
            return "InvalidInput" if self.broken_features is None else "SchemaViolation"
        return None


def sample_events(
    count: int,
    seed: int,
    malformed_rate: float,
    *,
    samples_path: Path | None = None,
    schema_path: Path | None = None,
) -> list[SampleEvent]:
    """`count` events whose inputs are drawn from `samples_path` (model/samples.jsonl), a seeded
    fraction of them broken.

    Half the broken ones are not JSON at all (InvalidJson); the other half break the model's
    input schema at `schema_path` (model/code/input.schema.json; SchemaViolation). Both are the
    handler's own refusals: no broken event reaches the endpoint.
    """
    samples_path = samples_path or SAMPLES_FILE
    schema = load_input_schema(schema_path or model_input_schema_path(PROJECT_DIR / "model"))
    rng = random.Random(seed)
    events = []
    for index, features in enumerate(draw_samples(count, seed, samples_path)):
        event_id = f"evt-{seed}-{index:06d}"
        if rng.random() < malformed_rate:
            variant = MALFORMED_VARIANTS[rng.random() >= 0.5]
            broken = schema_breaking(features, schema) if variant == "schema" else None
            events.append(SampleEvent(event_id, features, variant, broken))
        else:
            events.append(SampleEvent(event_id, features))
    return events


class PipelineProgress:
    """A local run's progress bar: events accounted for (predicted or dead-lettered) of those to send."""

    def __init__(self, total: int, stream: TextIO | None) -> None:
        self._total = total
        self._line = ProgressLine(total, stream)

    def show(self, sent: int, accounted: int) -> None:
        def render(elapsed: float) -> str:
            rate = accounted / elapsed if elapsed > 0 else 0.0
            eta = f"{(self._total - accounted) / rate:.0f}s" if rate > 0 else "?"
            filled = accounted * 30 // max(self._total, 1)
            return (
                f"[{'#' * filled}{'.' * (30 - filled)}] {accounted}/{self._total} accounted for, "
                f"{sent} sent, {rate:.0f} msg/s, ETA {eta}"
            )

        self._line.update(accounted, render)

    def close(self) -> None:
        """End the redrawn line so the summary starts on its own."""
        self._line.close()


class Ledger:
    """Which sent messages have come out the other end, and how."""

    def __init__(
        self,
        prediction_event_id: Callable[[Any], str | None] | None = None,
        newer_prediction_stored: Callable[[str, int, str], bool] | None = None,
    ) -> None:
        self.sent_ids: set[str] = set()
        self.accounted: set[str] = set()
        self.duplicates = 0
        self.predictions: list[dict[str, Any]] = []
        # Dead-letter queue messages that accounted for a message; one trigger message may
        # stand for a whole range of stream records.
        self.dead_letters: list[dict[str, Any]] = []
        self.dead_lettered: set[str] = set()
        self.superseded: set[str] = set()
        self.last_accounted_at = time.monotonic()
        # Per message id: its event id, key and event time, when it was sent, and every arrival
        # (duplicates included).
        self.event_ids: dict[str, str] = {}
        self.message_ids: dict[str, str] = {}
        self.keys: dict[str, tuple[str, int | None]] = {}
        self.sent_at: dict[str, float] = {}
        self.prediction_arrivals: Counter[str] = Counter()
        self.dead_letter_arrivals: dict[str, list[dict[str, Any]]] = {}
        self._prediction_event_id = prediction_event_id
        self._newer_prediction_stored = newer_prediction_stored
        # Messages the trigger is done with (the handler did not report them) that have no
        # outcome yet; only kept when predictions can be superseded.
        self._done_unaccounted: set[str] = set()
        self._done_lock = threading.Lock()

    @property
    def keeps_latest_only(self) -> bool:
        """Whether the destination stores only each key's newest prediction, so some are superseded."""
        return self._newer_prediction_stored is not None

    @property
    def in_flight(self) -> int:
        return len(self.sent_ids) - len(self.accounted)

    def record_sent(self, message_id: str, event_id: str, key: str = "", event_time_ms: int | None = None) -> None:
        self.sent_ids.add(message_id)
        self.event_ids[message_id] = event_id
        self.message_ids[event_id] = message_id
        self.keys[message_id] = (key, event_time_ms)
        self.sent_at[message_id] = time.monotonic()

    def in_flight_younger_than(self, seconds: float) -> int:
        """Messages not accounted for that were sent less than `seconds` ago."""
        oldest = time.monotonic() - seconds
        return sum(1 for message_id, sent in self.sent_at.items() if sent > oldest and message_id not in self.accounted)

    def record_prediction(self, envelope: Any) -> None:
        message_id = envelope.get("message_id") if isinstance(envelope, dict) else None
        if message_id is None and self._prediction_event_id is not None:
            message_id = self.message_ids.get(self._prediction_event_id(envelope) or "")
        if message_id in self.sent_ids:
            self.prediction_arrivals[message_id] += 1
        if self._account(message_id):
            self.predictions.append(envelope)

    def record_dead_letter(self, message: dict[str, Any]) -> None:
        accounted_any = False
        for message_id in dead_lettered_message_ids(message, self.sent_ids):
            if message_id in self.sent_ids:
                self.dead_letter_arrivals.setdefault(message_id, []).append(message)
            if self._account(message_id):
                self.dead_lettered.add(message_id)
                accounted_any = True
        if accounted_any:
            self.dead_letters.append(message)

    def records_done(self, message_ids: Sequence[str]) -> None:
        """The trigger's callback (from its pollers' threads): the handler is done with these."""
        if self._newer_prediction_stored is None:
            return
        with self._done_lock:
            self._done_unaccounted.update(message_ids)

    def account_superseded(self) -> None:
        """Account as superseded each message the handler is done with that has no outcome while
        the destination already holds a newer prediction of its key.

        Seen from outside, a handler that dropped such a record would look the same; the
        handler's `superseded` log lines tell them apart.
        """
        if self._newer_prediction_stored is None:
            return
        with self._done_lock:
            waiting = [message_id for message_id in self._done_unaccounted if message_id not in self.accounted]
            self._done_unaccounted = set(waiting)
        for message_id in waiting:
            key, event_time = self.keys.get(message_id, ("", None))
            if event_time is None or message_id not in self.sent_ids:
                continue
            if self._newer_prediction_stored(key, event_time, message_id):
                self._account(message_id)
                self.superseded.add(message_id)

    def _account(self, message_id: str | None) -> bool:
        # Messages this run did not send (left over in an external emulator's queues) are ignored.
        if message_id not in self.sent_ids:
            return False
        if message_id in self.superseded:
            # Its write did land after all, before a newer one replaced it, and the reader only
            # now got to it: the real outcome replaces "superseded", and is no duplicate.
            self.superseded.discard(message_id)
            self.accounted.discard(message_id)
        if message_id in self.accounted:
            self.duplicates += 1
            return False
        self.accounted.add(message_id)
        self.last_accounted_at = time.monotonic()
        return True


@contextmanager
def handler_log(path: Path) -> Iterator[None]:
    """Send the handler's log lines and what it prints (its EMF metric lines) to `path`.

    In Lambda both go to CloudWatch Logs; here they go to one file, so the terminal keeps the
    progress and the summary. One handle serves both, so neither overwrites the other's lines.
    """
    with path.open("w", encoding="utf-8") as output, contextlib.redirect_stdout(output):
        logging.basicConfig(stream=output, level=logging.INFO, format="%(message)s")
        yield


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


@dataclass(frozen=True)
class TriggerLimits:
    """Upper bounds on the trigger's settings from app.py for one local run (None: no bound)."""

    batch_size: int | None = None
    batching_window_seconds: int | None = None
    maximum_concurrency: int | None = None

    def bound(self, value: int, limit: int | None) -> int:
        return value if limit is None else min(value, limit)


# `make local` polls with at most 10 pollers: Lambda may scale to 1,000 concurrent invocations,
# but more local pollers only contend for the one moto process.
LOCAL_TRIGGER_LIMITS = TriggerLimits(maximum_concurrency=10)
# Runs that exercise faults or measure the pipeline use the template's default trigger shape
# whatever the project chose, so a 300 s window or 10,000-record batches cannot hold them up and
# their fault counts mean the same in every project.
EXERCISE_TRIGGER_LIMITS = TriggerLimits(batch_size=10, batching_window_seconds=1, maximum_concurrency=10)


def run_local_pipeline(
    count: int = 300,
    seed: int = 7,
    malformed_rate: float = 0.02,
    stage: str = "dev",
    *,
    project_dir: Path = PROJECT_DIR,
    model_dir: Path | None = None,
    samples_path: Path | None = None,
    endpoint_latency_ms: int = 0,
    visibility_timeout_seconds: float = VISIBILITY_TIMEOUT_SECONDS,
    stall_timeout_seconds: float | None = None,
    max_in_flight: int | None = None,
    progress: TextIO | None = sys.stderr,
    events: Sequence[OutgoingEvent] | None = None,
    max_receive_count: int | None = MAX_RECEIVE_COUNT,
    function_timeout_seconds: float | None = None,
    hooks: PipelineHooks | None = None,
    settle: bool = False,
    stuck_after_seconds: float | None = None,
    settle_limit_seconds: float | None = None,
    maximum_concurrency: int | None = None,
    trigger_limits: TriggerLimits = LOCAL_TRIGGER_LIMITS,
) -> PipelineSummary:
    """Run the pipeline once and account for every message sent.

    The run waits until every sent message is a prediction or a dead letter, or until nothing
    new has come out for `stall_timeout_seconds` (by default long enough for one redelivery
    after the visibility timeout); what is still missing then counts as lost. `model_dir`
    defaults to the project's model/, whose code/input.schema.json the handler checks inputs
    against (unless the stage sets MODEL_INPUT_SCHEMA); `samples_path` (the model inputs drawn
    from) to model/samples.jsonl; `max_in_flight` to MAX_IN_FLIGHT, or two batches when the
    trigger's batch size is larger, so that batches can still fill. EndpointStartError when the
    local endpoint cannot serve the model.

    A queue source's handler is told the queue's `max_receive_count` (MAX_RECEIVE_COUNT), as the
    stack tells the deployed function, so a record that fails on its last delivery is dead-lettered
    with its reason (see handler_redelivery_environment).

    For fault injection: `events` replaces the sample events; `max_receive_count` None runs the
    features queue without a redrive policy (and the handler without MAX_RECEIVE_COUNT);
    `function_timeout_seconds` overrides the stage's Lambda timeout; `hooks` reach the endpoint,
    the handler and the sending; `settle` keeps the run going until the features queue is empty,
    so redeliveries still pending are processed and their duplicates counted;
    `stuck_after_seconds` stops counting messages that old against the in-flight limit, so a
    handler that strands records cannot stop the sending;
    `settle_limit_seconds` ends the run that long after the last event was sent, whatever is left;
    `maximum_concurrency` overrides the trigger's (one poller makes batches deterministic);
    `trigger_limits` bounds the trigger's batch size, window and concurrency (see
    EXERCISE_TRIGGER_LIMITS).
    """
    model_dir = model_dir or project_dir / "model"
    settings = load_stage(stage, project_dir)
    function_timeout = function_timeout_seconds or settings.lambda_timeout
    if stall_timeout_seconds is None:
        stall_timeout_seconds = visibility_timeout_seconds + function_timeout + 10
    if events is None:
        events = sample_events(
            count,
            seed,
            malformed_rate,
            samples_path=samples_path or project_dir / "model" / "samples.jsonl",
            schema_path=model_input_schema_path(model_dir),
        )
    hooks = hooks or PipelineHooks()
    redelivery = Redelivery(max_receive_count, visibility_timeout_seconds)
    key_field = producer_key_field(settings.environment_variables)
    with (
        stage_environment(settings),
        local_aws_environment(),
        started_endpoint(model_dir, endpoint_latency_ms) as endpoint,
        patched_environ(handler_model_environment(settings.environment_variables, model_dir, endpoint.url)),
    ):
        features = create_source(settings.environment_variables, redelivery)
        create_destination(settings.environment_variables)
        if hooks.endpoint_ready is not None:
            hooks.endpoint_ready(endpoint)
        # Created before the first event is sent: a reader that follows a stream starts at its end.
        predictions = PredictionReader(settings.environment_variables)
        # A table keeps each key's newest prediction only (an older event's write is refused): its
        # reader says which; other destinations keep every prediction and have no such check.
        ledger = Ledger(hooks.prediction_event_id, predictions.newer_prediction_stored)
        with (
            patched_environ(handler_redelivery_environment(features.arn, redelivery)),
            cold_started_handler(project_dir) as app,
        ):
            mapping = declared_event_source(app)
            batch_size = trigger_limits.bound(mapping.batch_size, trigger_limits.batch_size)
            limit = max_in_flight or max(MAX_IN_FLIGHT, 2 * batch_size)
            handler = app.handle_feature_events
            if hooks.wrap_handler is not None:
                handler = hooks.wrap_handler(handler)
            trigger = local_trigger(
                handler,
                features,
                FunctionConfiguration(
                    function_name=settings.function_name,
                    timeout_seconds=function_timeout,
                    memory_size_mb=settings.lambda_memory_size,
                ),
                batch_size=batch_size,
                batching_window_seconds=trigger_limits.bound(
                    mapping.maximum_batching_window_in_seconds, trigger_limits.batching_window_seconds
                ),
                maximum_concurrency=maximum_concurrency
                or trigger_limits.bound(
                    getattr(mapping, "maximum_concurrency", None) or DEFAULT_CONCURRENCY,
                    trigger_limits.maximum_concurrency,
                ),
                redelivery=redelivery,
                records_done=ledger.records_done,
            )
            with trigger:
                elapsed, unsent = _send_and_account(
                    _Outputs(features, predictions, trigger, ledger),
                    events,
                    _Pacing(limit, stall_timeout_seconds, settle, stuck_after_seconds, settle_limit_seconds),
                    hooks,
                    progress,
                    key_field,
                )
            stats = trigger.stats
        stranded = trigger.backlog()
    latencies = [
        envelope["latency_ms"]
        for envelope in ledger.predictions
        if isinstance(envelope, dict) and envelope.get("latency_ms") is not None
    ]
    return PipelineSummary(
        sent=len(ledger.sent_ids),
        predicted=len(ledger.predictions),
        dead_lettered=len(ledger.dead_lettered),
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
        unsent=unsent,
        stranded=stranded,
        deliveries=stats.records_delivered,
        ledger=ledger,
        superseded=len(ledger.superseded) if ledger.keeps_latest_only else None,
        timed_out=stats.timeouts,
    )


@contextmanager
def started_endpoint(model_dir: Path, latency_ms: int = 0) -> Iterator[LocalEndpoint]:
    """The local endpoint serving `model_dir`; EndpointStartError, with the model's own message,
    when it cannot (inference.py does not import, model_fn fails, an artifact is missing)."""
    try:
        endpoint = LocalEndpoint(model_dir=model_dir, latency_ms=latency_ms)
        endpoint.start()
    except Exception as error:  # noqa: BLE001 - whatever the model raised is the user's to read
        raise EndpointStartError(f"the local endpoint cannot serve the model in {model_dir}: {error}") from error
    try:
        yield endpoint
    finally:
        endpoint.stop()


def handler_model_environment(environment: dict[str, str], model_dir: Path, endpoint_url: str) -> dict[str, str]:
    """What the handler needs to reach the local endpoint and check inputs against the served model's schema.

    The schema is the served model's own (model_dir/code/input.schema.json) unless the stage sets
    MODEL_INPUT_SCHEMA itself (an empty value turns the check off).
    """
    variables = {"AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": endpoint_url}
    if "MODEL_INPUT_SCHEMA" not in environment:
        variables["MODEL_INPUT_SCHEMA"] = str(model_input_schema_path(model_dir).resolve())
    return variables


def handler_redelivery_environment(source_arn: str, redelivery: Redelivery) -> dict[str, str | None]:
    """What the handler is told of the local source's redelivery, as the stack tells the deployed function
    (deploy/source.py function_environment).

    A queue's handler gets its maxReceiveCount (MAX_RECEIVE_COUNT), so that on a record's last
    delivery it dead-letters the record with its reason, as deployed, rather than leave it to the
    redrive policy, which moves it without one; a queue without a redrive policy removes the
    variable. A stream counts no deliveries, so a Kinesis handler is told nothing, as deployed.
    """
    if source_arn.split(":")[2] != "sqs":
        return {}
    return redelivery.handler_environment()


def declared_event_source(app: Any) -> BaseEventSourceConfig:
    """The trigger app.py declares, so local mode polls exactly as the deployed mapping will."""
    for source in app.app.event_sources:
        if source.name == HANDLER_NAME:
            return source
    raise RuntimeError(f"app.py declares no event source for a handler named {HANDLER_NAME}")


class LocalTrigger(Protocol):
    """What the pipeline needs of the source's Lambda-like trigger."""

    @property
    def stats(self) -> Any: ...

    def backlog(self) -> int: ...


@dataclass(frozen=True)
class _Outputs:
    """Where the run looks for what came out: the destination, the dead-letter queue, the trigger."""

    features: FeaturesSource
    predictions: PredictionReader
    trigger: LocalTrigger
    ledger: Ledger


@dataclass(frozen=True)
class _Pacing:
    """How the sender paces itself and when the run is over."""

    max_in_flight: int
    stall_timeout_seconds: float
    settle: bool = False
    stuck_after_seconds: float | None = None
    settle_limit_seconds: float | None = None


def _send_and_account(
    outputs: _Outputs,
    events: Sequence[OutgoingEvent],
    pacing: _Pacing,
    hooks: PipelineHooks,
    progress: TextIO | None,
    key_field: str = "",
) -> tuple[float, int]:
    """Send every event while reading the destination and the dead-letter queue; return the
    seconds taken and how many events were never sent."""
    ledger = outputs.ledger
    sender = EventSender(outputs.features)
    dead_letter_queue = boto3.client("sqs")
    started = ledger.last_accounted_at
    unsent = deque(events)
    progress_line = PipelineProgress(len(events), progress)
    last_sent_at = started

    def in_flight() -> int:
        if pacing.stuck_after_seconds is None:
            return ledger.in_flight
        return ledger.in_flight_younger_than(pacing.stuck_after_seconds)

    def drain(wait_seconds: float) -> int:
        # Sending is done or paused at the in-flight limit here, so waiting for output costs nothing.
        predictions = outputs.predictions.read(wait_seconds)
        for envelope in predictions:
            ledger.record_prediction(envelope)
        dead_letters = receive_and_delete(dead_letter_queue, outputs.features.dead_letter_url)
        for message in dead_letters:
            ledger.record_dead_letter(message)
        ledger.account_superseded()
        return len(predictions) + len(dead_letters)

    try:
        while True:
            while unsent and in_flight() < pacing.max_in_flight:
                _send_batch(sender, unsent, ledger, key_field)
                last_sent_at = time.monotonic()
                if hooks.events_sent is not None:
                    hooks.events_sent(len(ledger.sent_ids))
            drain(wait_seconds=1)
            progress_line.show(len(ledger.sent_ids), len(ledger.accounted))
            now = time.monotonic()
            if now - ledger.last_accounted_at >= pacing.stall_timeout_seconds:
                break
            settle_limit = pacing.settle_limit_seconds
            if not unsent and settle_limit is not None and now - last_sent_at >= settle_limit:
                break
            if not unsent and not ledger.in_flight:
                if not pacing.settle:
                    break
                if not outputs.trigger.backlog():
                    # Publishing comes before the trigger lets go of a record, so what the last
                    # invocation sent is out.
                    while drain(wait_seconds=0):
                        pass
                    break
    finally:
        progress_line.close()
    return ledger.last_accounted_at - started, len(unsent)


def _send_batch(sender: EventSender, unsent: deque[OutgoingEvent], ledger: Ledger, key_field: str) -> None:
    batch = [unsent.popleft() for _ in range(min(MAX_EVENTS_PER_SEND, len(unsent)))]
    bodies = [event.body() for event in batch]
    keys = [event_key(event, key_field) for event in batch]
    refused = []
    for event, body, key, message_id in zip(batch, bodies, keys, sender.send(bodies, keys), strict=True):
        if message_id is None:
            refused.append(event)
        else:
            ledger.record_sent(message_id, event.event_id, key, event_time_ms(body))
    # Events the source refused were not sent: they go back to the front and are tried again.
    unsent.extendleft(reversed(refused))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the pipeline, print the summary, exit 1 if a message was lost."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=300, help="feature events to send (default 300)")
    parser.add_argument("--seed", type=int, default=7, help="seed for the sample events (default 7)")
    parser.add_argument("--malformed-rate", type=float, default=0.02, help="fraction of broken bodies (default 0.02)")
    parser.add_argument("--stage", default="dev", help="Chalice stage whose settings to run with (default dev)")
    parser.add_argument(
        "--file",
        type=Path,
        help="JSON Lines of your own events (model inputs or envelopes) to draw from (default model/samples.jsonl)",
    )
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
    try:
        with handler_log(args.log_file):
            summary = run_local_pipeline(
                args.count,
                args.seed,
                args.malformed_rate,
                args.stage,
                samples_path=args.file,
                endpoint_latency_ms=args.latency_ms,
                visibility_timeout_seconds=args.visibility_timeout,
            )
    except (UnknownStageError, SamplesError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except EndpointStartError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary.table())
    print(f"handler log    {args.log_file}")
    if summary.lost:
        print(f"{summary.lost} message(s) lost: neither predicted nor dead-lettered", file=sys.stderr)
    return 1 if summary.lost else 0


if __name__ == "__main__":
    sys.exit(main())
