# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A seeded plan of faults for a local-mode run, and what injects each fault into the pipeline.

Which event gets which fault is decided up front from a seed, so a soak run can be repeated
exactly and every event's fate checked against what was done to it:

- malformed: a body that is not JSON, or JSON that breaks the model's own input schema
  (model/code/input.schema.json: a required field dropped, or a declared property given a value
  of a type it refuses, checked against the schema; JSON that is not an object when neither
  breaks it);
- oversize: a real JSON object larger than the handler's MAX_RECORD_BYTES (the input with an
  added `_padding` field);
- model_rejected: the endpoint answers ModelError for any request carrying the record's input;
- throttled: the endpoint throttles the next N requests carrying the record's input (a burst);
- slow: the endpoint answers the input's request so late that the invocation's deadline passes;
- stalled: the endpoint answers the input's next N requests later than the whole function
  timeout, so no read timeout the handler can afford is long enough: it must give up on the call
  and answer in time (or the trigger stops the invocation at the timeout and keeps the batch);
- sink_refused: the destination refuses the record's prediction N times (botocore hooks);
- sink_invalid: the destination refuses the record's prediction for good, as it refuses one it
  finds invalid (a batch entry failed with SenderFault true, DynamoDB's ValidationException; see
  sink_faults.PERMANENT_REFUSALS): the handler must dead-letter it with its reason. A Kinesis
  destination reports no such refusal for one record, so its plans have none;
- killed: the invocation carrying the record runs in a child process that is SIGKILLed mid-way;
- outages: the whole endpoint answers 503 for longer than the source keeps delivering a failing
  record (maxReceiveCount x visibility timeout; a stream's retries come at once).

The inputs are drawn from model/samples.jsonl (or a file of the team's), whatever their fields:
nothing is added to them. Endpoint faults go through the local endpoint's Fault hook and match a
record by its content: the input exactly as the handler writes it into an InvokeEndpoint body
(input_text: compact JSON, keys in the order sent), which is there verbatim whatever the batching
and content type. So events with the same input share their endpoint fault: when a run holds an
input more than once (more events than samples), every event of that input that has no fault of
its body gets the fault planned first for it, and the ledger expects it of each. An input whose
text lies inside another request's text (a sample nested in another) gets no endpoint fault,
since the fault would hit the other too.

A prediction is traced to its event by the envelope's event_id, which the handler copies from the
event's envelope. The naive handler publishes the model's raw answer, with no id: see
FaultInjection.prediction_event_id.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import boto3

from chalicelib.template_runtime.batch import PREDICTION_REFUSED

from .destination import PUBLISH_OPERATION, refuse_predictions
from .endpoint_server import Fault, LocalEndpoint
from .lambda_trigger import INIT_PHASE_LIMIT_SECONDS, FunctionTimedOut, Handler
from .local_pipeline import (
    PipelineHooks,
    envelope_body,
    input_text,
    load_input_schema,
    model_input_schema_path,
    not_an_object,
    schema_breaking,
)
from .model_samples import SAMPLES_FILE, draw_samples
from .sink_faults import Refusal, permanent_refusal
from .source import record_body, record_message_id
from .stage import PROJECT_DIR

# How this project's destination refuses a prediction for good; None: it has no such refusal
# for one record (a Kinesis stream), so no event is planned "sink_invalid".
SINK_INVALID_REFUSAL = permanent_refusal(PUBLISH_OPERATION)
FAULT_KINDS = (
    "malformed",
    "oversize",
    "model_rejected",
    "throttled",
    "slow",
    "sink_refused",
    "killed",
    "stalled",
    *(("sink_invalid",) if SINK_INVALID_REFUSAL is not None else ()),
)
# Faults no retry can cure: the handler must dead-letter these records with this code.
PERMANENT_FAULT_CODES = {
    "malformed": frozenset({"InvalidJson", "SchemaViolation", "InvalidInput"}),
    "oversize": frozenset({"RecordTooLarge"}),
    "model_rejected": frozenset({"ModelError"}),
    # The handler's code for a prediction its destination refused for good (the reason names the
    # destination's own code).
    "sink_invalid": frozenset({PREDICTION_REFUSED}),
}
KILL_POINTS = ("calling_endpoint", "publishing", "returning")
# Faults the endpoint plays, matched by the record's input; and faults of the body itself, whose
# input never reaches the endpoint as it is.
ENDPOINT_FAULTS = ("model_rejected", "throttled", "slow", "stalled")
BODY_FAULTS = ("malformed", "oversize")
# The field an oversize body is padded with (or the first of `_padding_1`, ... the input lacks).
PADDING_FIELD = "_padding"
# app.py's sagemaker-runtime client makes this many attempts before the handler sees an error.
ENDPOINT_ATTEMPTS_PER_DELIVERY = 3
# SendMessageBatch takes 1 MiB; the sender batches 10 consecutive events, so oversize bodies
# are kept in different tens.
SEND_BATCH_SIZE = 10
# One endpoint outage per this many events (at least one when there are faults at all).
EVENTS_PER_OUTAGE = 2500
APP_HANDLER = "app:handle_feature_events"
# A killed invocation's child is killed at once; this only bounds an orphan whose parent died.
ORPHAN_SECONDS = 300
# What a killed invocation's child says once it has imported the handler's module.
INITIALIZED = "initialized"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FaultTimings:
    """The queue and function settings a run uses, which the faults are sized against."""

    visibility_timeout_seconds: float = 3
    max_receive_count: int = 3
    function_timeout_seconds: float = 3
    deadline_reserve_ms: int = 1000
    max_record_bytes: int = 256 * 1024

    def __post_init__(self) -> None:
        if self.max_receive_count < 2:
            raise ValueError("max_receive_count must be at least 2, so a record can fail once and recover")
        if self.visibility_timeout_seconds < self.function_timeout_seconds:
            # Lambda refuses such an event source mapping ("Queue visibility timeout: ... is less
            # than Function timeout"): a record would come back while its invocation still runs.
            raise ValueError("the visibility timeout must be at least the function timeout, as Lambda requires")
        if self.function_timeout_seconds * 1000 <= self.deadline_reserve_ms:
            raise ValueError("the function timeout must be longer than the deadline reserve")

    def scaled(self, factor: float) -> FaultTimings:
        """The same timings with the endpoint's share of the invocation (the function timeout less
        the deadline reserve) and the visibility timeout's margin over the function timeout
        multiplied by `factor`: the same faults, played faster or slower.

        The deadline reserve stays whole, as do other durations the pipeline does not set
        (botocore's backoff between retries, for one): it is the time publishing gets, and the
        emulator answers a publishing call no faster for a shorter test.
        """
        reserve_seconds = self.deadline_reserve_ms / 1000
        function_timeout = (self.function_timeout_seconds - reserve_seconds) * factor + reserve_seconds
        margin = (self.visibility_timeout_seconds - self.function_timeout_seconds) * factor
        return replace(
            self, visibility_timeout_seconds=function_timeout + margin, function_timeout_seconds=function_timeout
        )

    @property
    def outage_seconds(self) -> float:
        """Longer than maxReceiveCount x visibility timeout: a record the outage catches first fails
        every delivery it gets, and the queue's redrive moves it to the dead-letter queue."""
        return self.max_receive_count * self.visibility_timeout_seconds + self.function_timeout_seconds

    @property
    def slow_answer_ms(self) -> int:
        """An answer that arrives after the deadline has passed but before the function times out."""
        return round(self.function_timeout_seconds * 1000 - self.deadline_reserve_ms / 2)

    @property
    def stalled_answer_ms(self) -> int:
        """An answer later than the whole function timeout (by the deadline reserve): whatever read
        timeout the handler gives the call from the time it has left, the answer comes after it."""
        return round(self.function_timeout_seconds * 1000 + self.deadline_reserve_ms)

    def handler_environment(self) -> dict[str, str]:
        """The handler settings the faults are sized against."""
        return {"DEADLINE_RESERVE_MS": str(self.deadline_reserve_ms), "MAX_RECORD_BYTES": str(self.max_record_bytes)}


@dataclass
class PlannedEvent:
    """One event of the run, the fault planned for it, and its body as sent."""

    event_id: str
    # The model input the event carries (before any fault of its body).
    features: dict[str, Any]
    fault: str | None = None
    # Throttled or stalled requests, or refusals of the prediction.
    times: int = 0
    # How a malformed body is broken ("not_json", "schema"), or where a kill strikes (KILL_POINTS).
    variant: str = ""
    # "envelope" ({"event_id", "event_time", "features"}), or "bare" (the model input alone).
    body_format: str = "envelope"
    max_record_bytes: int = 256 * 1024
    # A "schema" malformed body's input, made to break the model's schema; None: JSON that is
    # not an object is sent instead.
    broken_features: dict[str, Any] | None = None
    _body: str | None = field(default=None, repr=False, compare=False)

    def body(self) -> str:
        """The body, made when first asked (at send time, so the event time is the send time)."""
        if self._body is None:
            self._body = self._make_body(self.body_format)
        return self._body

    def request_text(self) -> str:
        """What this event can put into an InvokeEndpoint body: its input as the handler encodes
        it, or a bare body as a naive handler sends it (broken as its fault says)."""
        return self._make_body("bare")

    @property
    def input_text(self) -> str:
        """The event's input as the handler writes it into an InvokeEndpoint body: endpoint faults match it."""
        return input_text(self.features)

    def _document(self) -> dict[str, Any]:
        if self.fault == "malformed" and self.variant == "schema" and self.broken_features is not None:
            return self.broken_features
        if self.fault == "oversize":
            # A real model input, just far too long: the handler must refuse it before the endpoint.
            return dict(self.features, **{padding_field(self.features): "x" * self.max_record_bytes})
        return self.features

    def _make_body(self, body_format: str) -> str:
        document = self._document()
        # A bare body is the input exactly as the handler would encode it, so endpoint faults
        # match a naive handler's requests (which send the body as it is) too.
        body = input_text(document) if body_format == "bare" else envelope_body(self.event_id, document)
        if self.fault == "malformed" and self.variant == "schema" and self.broken_features is None:
            body = not_an_object(body)
        if self.fault == "malformed" and self.variant == "not_json":
            # Cut off mid-way, as a producer that crashed while writing would leave it.
            body = body[: len(body) * 2 // 3]
        return body


def padding_field(features: dict[str, Any]) -> str:
    """A field name the input does not have, to pad it with."""
    name, number = PADDING_FIELD, 0
    while name in features:
        number += 1
        name = f"{PADDING_FIELD}_{number}"
    return name


@dataclass(frozen=True)
class Outage:
    """The endpoint answers 503 to everything for `seconds`, once `after_sent` events are sent."""

    after_sent: int
    seconds: float


@dataclass(frozen=True)
class FaultPlan:
    """Every event of a run with its fault, and the endpoint outages."""

    events: list[PlannedEvent]
    outages: list[Outage]
    timings: FaultTimings
    seed: int = 0
    fault_rate: float = 0.0

    @classmethod
    def seeded(
        cls,
        count: int,
        fault_rate: float,
        seed: int,
        timings: FaultTimings | None = None,
        *,
        body_format: str = "envelope",
        outages: int | None = None,
        samples_path: Path | None = None,
        schema_path: Path | None = None,
        every_kind: bool = False,
    ) -> FaultPlan:
        """`count` events whose inputs are drawn from `samples_path` (model/samples.jsonl); each
        gets one of FAULT_KINDS with probability `fault_rate`, then events of one input share its
        endpoint fault (see the module docstring). Schema-breaking bodies break the schema at
        `schema_path` (model/code/input.schema.json).

        `every_kind` then gives each kind the draw missed to a healthy event (seeded too), so a
        run at a low fault rate still meets every fault (the soak's default).
        """
        timings = timings or FaultTimings()
        schema = load_input_schema(schema_path or model_input_schema_path(PROJECT_DIR / "model"))
        rng = random.Random(seed)
        events: list[PlannedEvent] = []
        last_oversize_ten = -1
        for index, features in enumerate(draw_samples(count, seed, samples_path or SAMPLES_FILE)):
            event = plain_event(f"evt-{seed}-{index:06d}", features, body_format, timings)
            if rng.random() < fault_rate:
                kind = rng.choice(FAULT_KINDS)
                if kind == "oversize" and index // SEND_BATCH_SIZE == last_oversize_ten:
                    kind = "malformed"
                if kind == "oversize":
                    last_oversize_ten = index // SEND_BATCH_SIZE
                _apply_fault(event, kind, rng, timings, schema)
            events.append(event)
        if every_kind and fault_rate > 0:
            _plan_missing_kinds(events, rng, timings, schema)
        share_endpoint_faults(events)
        if outages is None:
            outages = max(1, count // EVENTS_PER_OUTAGE) if fault_rate > 0 and count >= 100 else 0
        planned_outages = [
            Outage(after_sent=int(count * (number + 0.5) / outages), seconds=timings.outage_seconds)
            for number in range(outages)
        ]
        return cls(events, planned_outages, timings, seed, fault_rate)

    @classmethod
    def healthy(
        cls,
        count: int,
        timings: FaultTimings | None = None,
        *,
        seed: int = 0,
        samples_path: Path | None = None,
        body_format: str = "envelope",
    ) -> FaultPlan:
        """`count` events without faults, for a test to give chosen ones a fault by hand."""
        return cls.seeded(count, 0.0, seed, timings, outages=0, samples_path=samples_path, body_format=body_format)

    def kinds(self) -> Counter[str]:
        """How many events got each fault ("none" for the healthy ones)."""
        return Counter(event.fault or "none" for event in self.events)

    def by_event_id(self) -> dict[str, PlannedEvent]:
        return {event.event_id: event for event in self.events}

    def endpoint_faults(self) -> dict[str, PlannedEvent]:
        """Per input text with an endpoint fault, the first event that carries it (its kind and times)."""
        faults: dict[str, PlannedEvent] = {}
        for event in self.events:
            if event.fault in ENDPOINT_FAULTS:
                faults.setdefault(event.input_text, event)
        return faults


def plain_event(event_id: str, features: dict[str, Any], body_format: str, timings: FaultTimings) -> PlannedEvent:
    """An event without a fault, carrying its input as it is."""
    return PlannedEvent(event_id, features, body_format=body_format, max_record_bytes=timings.max_record_bytes)


def _apply_fault(
    event: PlannedEvent, kind: str, rng: random.Random, timings: FaultTimings, schema: dict[str, Any] | None
) -> None:
    event.fault = kind
    if kind == "malformed":
        event.variant = rng.choice(("not_json", "schema"))
        if event.variant == "schema":
            event.broken_features = schema_breaking(event.features, schema)
    elif kind == "throttled":
        # At most one delivery short of maxReceiveCount: the record recovers without redrive.
        event.times = rng.randint(1, ENDPOINT_ATTEMPTS_PER_DELIVERY * (timings.max_receive_count - 1))
    elif kind in ("sink_refused", "stalled"):
        # At most one delivery short of maxReceiveCount (a delivery makes one request at most that
        # stalls: it is not retried within the invocation), so the record recovers.
        event.times = rng.randint(1, timings.max_receive_count - 1)
    elif kind == "killed":
        event.variant = rng.choice(KILL_POINTS)


def _plan_missing_kinds(
    events: list[PlannedEvent], rng: random.Random, timings: FaultTimings, schema: dict[str, Any] | None
) -> None:
    """Give each of FAULT_KINDS no event has yet to a healthy event drawn with `rng` (an oversize
    one only in a ten of events without one: the sender's batch of ten takes 1 MiB)."""
    planned = {event.fault for event in events}
    for kind in (kind for kind in FAULT_KINDS if kind not in planned):
        oversize_tens = {index // SEND_BATCH_SIZE for index, event in enumerate(events) if event.fault == "oversize"}
        candidates = [
            index
            for index, event in enumerate(events)
            if event.fault is None and not (kind == "oversize" and index // SEND_BATCH_SIZE in oversize_tens)
        ]
        if candidates:
            _apply_fault(events[rng.choice(candidates)], kind, rng, timings, schema)


def share_endpoint_faults(events: Sequence[PlannedEvent]) -> None:
    """Give every event of an input the endpoint fault planned first for that input, or take it
    from all of them when the input's text lies inside another request's text.

    The endpoint matches a fault by content, so it cannot tell two events of one input apart:
    each of them meets the fault, and the ledger must expect it of each. Events whose body is
    broken (malformed, oversize) keep their fault: their input never reaches the endpoint as it is.
    """
    groups: dict[str, list[PlannedEvent]] = {}
    for event in events:
        if event.fault not in BODY_FAULTS:
            groups.setdefault(event.input_text, []).append(event)
    request_texts = {event.request_text() for event in events}
    for text, group in groups.items():
        planned = next((event for event in group if event.fault in ENDPOINT_FAULTS), None)
        if planned is None:
            continue
        if any(text in other for other in request_texts if other != text):
            for event in group:
                if event.fault in ENDPOINT_FAULTS:
                    event.fault, event.times = None, 0
            continue
        for event in group:
            event.fault, event.times, event.variant = planned.fault, planned.times, ""


def event_id_of_prediction(document: Any) -> str | None:
    """The event a prediction envelope belongs to (the envelope's event_id); None for anything else."""
    if not isinstance(document, dict) or "prediction" not in document:
        return None
    event_id = document.get("event_id")
    return event_id if isinstance(event_id, str) else None


def _prediction_body_event_id(body: str) -> str | None:
    # Cheap test first: dead letters (the original bodies) pass through the same hooks.
    if '"prediction"' not in body:
        return None
    try:
        return event_id_of_prediction(json.loads(body))
    except ValueError:
        return None


def answer_key(document: Any) -> str:
    """A model answer as comparable text, whatever its key order."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class InvocationKilled(RuntimeError):
    """The function's process was killed mid-invocation; Lambda reports it as a function error."""


class HandlerKiller:
    """Runs the invocation that first carries a planned event in a child process, and SIGKILLs it.

    The child runs the real handler against the same emulator and endpoint, and stops at the
    planned point (while calling the endpoint, after the first publish, or just before
    returning): it tells the parent and waits; the parent kills it with SIGKILL. The invocation
    never returns and never deletes anything; the trigger sees an error and keeps the batch.
    """

    def __init__(
        self,
        kill_points: dict[str, str],
        handler_ref: str = APP_HANDLER,
        project_dir: Path = PROJECT_DIR,
        event_ids_of_body: Callable[[str], list[str]] | None = None,
        refused_for_good: Collection[str] = (),
    ) -> None:
        """`kill_points`: event id -> KILL_POINTS; `event_ids_of_body` tells which events a record
        body may be (by default, the event_id of its envelope); `refused_for_good`: the events whose
        prediction the destination refuses for good (sink_invalid), in the child process too."""
        self._kill_points = dict(kill_points)
        self._refused_for_good = sorted(refused_for_good)
        self._event_ids_of_body = event_ids_of_body or _envelope_event_ids
        self._handler_ref = handler_ref
        self._project_dir = project_dir
        self._lock = threading.Lock()
        # (point, message ids of the killed batch), in the order the kills happened.
        self.killed: list[tuple[str, list[str]]] = []

    def wrap(self, handler: Handler) -> Handler:
        def invoke(event: dict[str, Any], context: Any) -> Any:
            point = self._claim(event)
            if point is None:
                return handler(event, context)
            return self._run_and_kill(event, context, point)

        return invoke

    def _claim(self, event: dict[str, Any]) -> str | None:
        with self._lock:
            for record in event["Records"]:
                for event_id in self._event_ids_of_body(record_body(record)):
                    if event_id in self._kill_points:
                        return self._kill_points.pop(event_id)
        return None

    def _run_and_kill(self, event: dict[str, Any], context: Any, point: str) -> Any:
        message_ids = [record_message_id(record) for record in event["Records"]]
        try:
            reached = self._kill_at(point, event, context)
        except FunctionTimedOut:
            # The trigger stopped the invocation at the function timeout while it waited (a child
            # slow to start on a busy machine): the child is killed all the same, and the kill counts.
            self._note_kill(point, message_ids)
            raise
        self._note_kill(point, message_ids)
        raise InvocationKilled(
            f"invocation {context.aws_request_id} killed with SIGKILL "
            f"({reached or 'before reaching ' + point}); {len(message_ids)} records not deleted"
        )

    def _note_kill(self, point: str, message_ids: list[str]) -> None:
        with self._lock:
            self.killed.append((point, message_ids))

    def _kill_at(self, point: str, event: dict[str, Any], context: Any) -> str:
        """Run the invocation in a child process until it reaches `point`, then SIGKILL it; return
        what the child said it reached ("" if it never got there)."""
        request = {
            "kill_point": point,
            "refused_for_good": self._refused_for_good,
            "event": event,
            "context": {
                name: getattr(context, name, None)
                for name in ("function_name", "memory_limit_in_mb", "invoked_function_arn", "aws_request_id")
            },
        }
        # The child's log lines (the handler's, and a traceback if it crashes) belong with this
        # process's log, not on the terminal: a file, as a pipe could fill and stall the child.
        with tempfile.TemporaryFile(mode="w+") as child_log:
            child = subprocess.Popen(
                [sys.executable, "-m", __name__, "--invoke-until-killed", self._handler_ref],
                cwd=self._project_dir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=child_log,
                text=True,
            )
            try:
                assert child.stdin is not None and child.stdout is not None
                # The child is a cold start: it imports the handler's module first, Lambda's Init
                # phase, which the function timeout does not count (on a machine busy with other
                # suites that import took seconds). An Init that overruns Lambda's limit goes on
                # under the function timeout, as Lambda runs it again there.
                with getattr(context, "init_phase", nullcontext)():
                    ready = _line_within(child.stdout, INIT_PHASE_LIMIT_SECONDS)
                if not ready:
                    ready = _line_within(child.stdout, context.get_remaining_time_in_millis() / 1000)
                reached = ""
                if ready == INITIALIZED:
                    request["remaining_ms"] = context.get_remaining_time_in_millis()
                    child.stdin.write(json.dumps(request))
                    child.stdin.close()
                    # A child that never gets there (it crashed or hangs) is killed when the
                    # function times out, as Lambda would stop it.
                    reached = _line_within(child.stdout, request["remaining_ms"] / 1000)
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait()
                if child.stdout is not None:
                    child.stdout.close()
            child_log.seek(0)
            for line in child_log:
                log.info(line.rstrip("\n"))
        return reached


def _line_within(stream: IO[str], seconds: float) -> str:
    """The child's next line, or "" when none comes within `seconds`."""
    readable, _, _ = select.select([stream], [], [], max(0.0, seconds))
    return stream.readline().strip() if readable else ""


def _envelope_event_ids(body: str) -> list[str]:
    try:
        document = json.loads(body)
    except ValueError:
        return []
    event_id = document.get("event_id") if isinstance(document, dict) else None
    return [event_id] if isinstance(event_id, str) else []


class _ChildContext:
    """The Lambda context as the parent's invocation had it."""

    def __init__(self, request: dict[str, Any]) -> None:
        self._deadline = time.monotonic() + request["remaining_ms"] / 1000
        for name, value in request["context"].items():
            setattr(self, name, value)
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _invoke_until_killed(handler_ref: str) -> None:
    """Child side of HandlerKiller: import the handler's module and say so (the Init phase),
    then run the handler on the request, stop at the kill point, and wait for SIGKILL."""
    logging.basicConfig(level=logging.ERROR)
    boto3.setup_default_session()
    module_name, function_name = handler_ref.split(":")
    handler = getattr(importlib.import_module(module_name), function_name)
    print(INITIALIZED, flush=True)
    request = json.loads(sys.stdin.read())

    def stop_here(**_: Any) -> None:
        print(request["kill_point"], flush=True)
        time.sleep(ORPHAN_SECONDS)
        os._exit(1)

    # Hooks on the default session reach the clients the handler creates on its first invocation.
    events = boto3.DEFAULT_SESSION.events
    # The destination refuses these predictions whichever process sends them: registered before
    # the kill point, so a refused publish is answered as refused before the child stops.
    refused_for_good = set(request["refused_for_good"])
    refusals = (
        refuse_predictions(
            events,
            lambda message: (
                SINK_INVALID_REFUSAL if _prediction_body_event_id(message["body"]) in refused_for_good else False
            ),
        )
        if refused_for_good and SINK_INVALID_REFUSAL is not None
        else nullcontext()
    )
    with refusals:
        if request["kill_point"] == "calling_endpoint":
            events.register("before-send.sagemaker-runtime.InvokeEndpoint", stop_here)
        elif request["kill_point"] == "publishing":
            events.register(f"after-call.{PUBLISH_OPERATION}", stop_here)
        handler(request["event"], _ChildContext(request))
        stop_here()


class FaultInjection:
    """Applies a FaultPlan to one run of run_local_pipeline; enter it to get the PipelineHooks.

    On entry the sink refusals are hooked into a fresh default boto3 session, before the run
    creates any client. The endpoint faults are injected once the endpoint serves, outages start
    as the sending passes their mark, and the handler is wrapped by a HandlerKiller.

    Predictions are traced to events by their envelope's event_id. A plan of bare bodies (the
    naive handler's: it publishes the model's raw answer, with no id) is traced by content
    instead: once the endpoint serves, and before any fault is injected, the model is asked once
    for each input of the plan, and a raw answer is the prediction of the events whose input the
    model answers so. When several events share an answer (the same input, or a model that
    answers several inputs alike), each arrival goes to the one of them with the fewest so far,
    in send order: how many of them were predicted is then exact, but not which one was, and a
    duplicate of one of them can hide a loss of another (see soak.py).
    """

    def __init__(
        self,
        plan: FaultPlan,
        handler_ref: str = APP_HANDLER,
        project_dir: Path = PROJECT_DIR,
        handler_override: Handler | None = None,
    ) -> None:
        self.plan = plan
        self._handler_override = handler_override
        self._events_by_request_text: dict[str, list[str]] = {}
        for event in plan.events:
            self._events_by_request_text.setdefault(event.request_text(), []).append(event.event_id)
        self.killer = HandlerKiller(
            {event.event_id: event.variant for event in plan.events if event.fault == "killed"},
            handler_ref,
            project_dir,
            self._event_ids_of_body,
            refused_for_good={event.event_id for event in plan.events if event.fault == "sink_invalid"},
        )
        # Raw answer (answer_key) -> the events the model answers so, and arrivals so far per event.
        self._events_by_answer: dict[str, list[str]] = {}
        self._arrivals: Counter[str] = Counter()
        self._refusals = {event.event_id: event.times for event in plan.events if event.fault == "sink_refused"}
        self._invalid = {event.event_id for event in plan.events if event.fault == "sink_invalid"}
        self._lock = threading.Lock()
        self._pending_outages = sorted(plan.outages, key=lambda outage: outage.after_sent)
        self._timers: list[threading.Timer] = []
        self._endpoint: LocalEndpoint | None = None
        self._stack = ExitStack()
        self.refused = 0
        # Publishes refused for good (sink_invalid), attempts included, and the events they carried.
        self.rejected_as_invalid = 0
        self.rejected_event_ids: set[str] = set()
        self.outages_started = 0

    def __enter__(self) -> PipelineHooks:
        boto3.setup_default_session()
        events = boto3.DEFAULT_SESSION.events
        self._stack.enter_context(refuse_predictions(events, lambda message: self._refuse(message["body"])))
        return PipelineHooks(
            endpoint_ready=self._inject_endpoint_faults,
            wrap_handler=self._wrap,
            events_sent=self._start_due_outages,
            prediction_event_id=self.prediction_event_id,
        )

    def __exit__(self, *exc_info: object) -> None:
        for timer in self._timers:
            timer.cancel()
        self._stack.close()

    def prediction_event_id(self, document: Any) -> str | None:
        """The event a prediction belongs to: its envelope's event_id, or for a raw answer, an
        event the model answers so (see the class docstring)."""
        event_id = event_id_of_prediction(document)
        if event_id is not None:
            return event_id
        candidates = self._events_by_answer.get(answer_key(document), [])
        if not candidates:
            return None
        with self._lock:
            chosen = min(candidates, key=lambda candidate: self._arrivals[candidate])
            self._arrivals[chosen] += 1
        return chosen

    def _event_ids_of_body(self, body: str) -> list[str]:
        """The events a delivered body may be: its envelope's event_id, or the events sent with that bare body."""
        return _envelope_event_ids(body) or self._events_by_request_text.get(body, [])

    def _learn_answers(self, endpoint: LocalEndpoint) -> None:
        """Ask the model once per input a bare plan sends, so raw answers can be traced to events."""
        if not any(event.body_format == "bare" for event in self.plan.events):
            return
        asked: dict[str, str | None] = {}
        for event in self.plan.events:
            if event.fault in BODY_FAULTS:
                continue
            text = event.input_text
            if text not in asked:
                asked[text] = _ask_model(endpoint.url, text)
            if asked[text] is not None:
                self._events_by_answer.setdefault(asked[text], []).append(event.event_id)

    def _wrap(self, handler: Handler) -> Handler:
        return self.killer.wrap(self._handler_override or handler)

    def _refuse(self, body: str) -> bool | Refusal:
        """Whether the destination refuses this message: a sink_refused prediction its first N
        times (a server-side failure), a sink_invalid one every time (the sender's fault)."""
        if not self._refusals and not self._invalid:
            return False
        event_id = _prediction_body_event_id(body) or ""
        with self._lock:
            if event_id in self._invalid and SINK_INVALID_REFUSAL is not None:
                self.rejected_as_invalid += 1
                self.rejected_event_ids.add(event_id)
                return SINK_INVALID_REFUSAL
            if not self._refusals.get(event_id, 0):
                return False
            self._refusals[event_id] -= 1
            self.refused += 1
            return True

    def _inject_endpoint_faults(self, endpoint: LocalEndpoint) -> None:
        self._endpoint = endpoint
        self._learn_answers(endpoint)
        # One fault per input: the endpoint cannot tell the events of one input apart.
        for text, event in self.plan.endpoint_faults().items():
            if event.fault == "model_rejected":
                endpoint.inject(Fault(error="ModelError", match=text))
            elif event.fault == "throttled":
                endpoint.inject(Fault(error="ThrottlingException", match=text, times=event.times))
            elif event.fault == "slow":
                endpoint.inject(Fault(match=text, times=1, delay_ms=self.plan.timings.slow_answer_ms))
            elif event.fault == "stalled":
                endpoint.inject(Fault(match=text, times=event.times, delay_ms=self.plan.timings.stalled_answer_ms))
        # An outage planned at 0 is on before the first event is sent.
        self._start_due_outages(0)

    def _start_due_outages(self, sent: int) -> None:
        while self._pending_outages and self._pending_outages[0].after_sent <= sent and self._endpoint is not None:
            outage = self._pending_outages.pop(0)
            fault = Fault(error="ServiceUnavailable")
            self._endpoint.inject(fault)
            self.outages_started += 1
            log.warning(json.dumps({"event": "endpoint_outage", "after_sent": sent, "seconds": outage.seconds}))
            timer = threading.Timer(outage.seconds, self._endpoint.withdraw, args=(fault,))
            timer.daemon = True
            timer.start()
            self._timers.append(timer)


def _ask_model(endpoint_url: str, text: str) -> str | None:
    """The model's answer to one input, as answer_key text; None when it does not answer with JSON."""
    name = os.environ.get("ENDPOINT_NAME") or "local"
    request = urllib.request.Request(
        f"{endpoint_url}/endpoints/{name}/invocations",
        data=text.encode("utf-8"),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the local endpoint
            return answer_key(json.loads(response.read()))
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    """Command line: `--invoke-until-killed` is the child side of HandlerKiller."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoke-until-killed", metavar="MODULE:HANDLER", help="used by HandlerKiller")
    args = parser.parse_args(argv)
    if args.invoke_until_killed:
        _invoke_until_killed(args.invoke_until_killed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
