# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A seeded plan of faults for a local-mode run, and what injects each fault into the pipeline.

Which event gets which fault is decided up front from a seed, so a soak run can be repeated
exactly and every event's fate checked against what was done to it:

- malformed: a body that is not JSON, or JSON that breaks the model input schema;
- oversize: a body larger than the handler's MAX_RECORD_BYTES;
- model_rejected: the endpoint answers ModelError for any request carrying the record;
- throttled: the endpoint throttles the next N requests carrying the record (a burst);
- slow: the endpoint answers the record's request so late that the invocation's deadline passes;
- sink_refused: the destination refuses the record's prediction N times (botocore hooks);
- killed: the invocation carrying the record runs in a child process that is SIGKILLed mid-way;
- outages: the whole endpoint answers 503 for longer than the source keeps delivering a failing
  record (maxReceiveCount x visibility timeout; a stream's retries come at once).

Endpoint faults go through the local endpoint's Fault hook and match the record by a marker in
its user_id (`u-0042/evt-7-000123`), which reaches the InvokeEndpoint body whatever the batching.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import random
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from .destination import refuse_predictions
from .endpoint_server import Fault, LocalEndpoint
from .lambda_trigger import Handler
from .local_pipeline import PipelineHooks
from .model_samples import draw_samples
from .source import record_body, record_message_id
from .stage import PROJECT_DIR

FAULT_KINDS = ("malformed", "oversize", "model_rejected", "throttled", "slow", "sink_refused", "killed")
# Faults no retry can cure: the handler must dead-letter these records with this code.
PERMANENT_FAULT_CODES = {
    "malformed": frozenset({"InvalidJson", "SchemaViolation"}),
    "oversize": frozenset({"RecordTooLarge"}),
    "model_rejected": frozenset({"ModelError"}),
}
KILL_POINTS = ("calling_endpoint", "publishing", "returning")
# app.py's sagemaker-runtime client makes this many attempts before the handler sees an error.
ENDPOINT_ATTEMPTS_PER_DELIVERY = 3
# SendMessageBatch takes 1 MiB; the sender batches 10 consecutive events, so oversize bodies
# are kept in different tens.
SEND_BATCH_SIZE = 10
# One endpoint outage per this many events (at least one when there are faults at all).
EVENTS_PER_OUTAGE = 2500
EVENT_ID = re.compile(r"evt-\d+-\d{6}")
APP_HANDLER = "app:handle_feature_events"
# A killed invocation's child is killed at once; this only bounds an orphan whose parent died.
ORPHAN_SECONDS = 300
# The call that publishes predictions: the kill point "publishing" strikes after the first one.
PUBLISH_OPERATION = "{{ {"sqs": "sqs.SendMessageBatch", "sns": "sns.PublishBatch", "kinesis": "kinesis.PutRecords", "dynamodb": "dynamodb.PutItem"}[cookiecutter.output_destination] }}"

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
        """The same timings with every duration (visibility timeout, function timeout, deadline
        reserve) multiplied by `factor`: the same faults, played faster or slower.

        Durations the pipeline does not set stay real: botocore's backoff between retries, for one.
        """
        return replace(
            self,
            visibility_timeout_seconds=self.visibility_timeout_seconds * factor,
            function_timeout_seconds=self.function_timeout_seconds * factor,
            deadline_reserve_ms=round(self.deadline_reserve_ms * factor),
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

    def handler_environment(self) -> dict[str, str]:
        """The handler settings the faults are sized against."""
        return {"DEADLINE_RESERVE_MS": str(self.deadline_reserve_ms), "MAX_RECORD_BYTES": str(self.max_record_bytes)}


@dataclass
class PlannedEvent:
    """One event of the run, the fault planned for it, and its body as sent."""

    event_id: str
    features: dict[str, Any]
    fault: str | None = None
    # Throttled requests in the burst, or refusals of the prediction.
    times: int = 0
    # How a malformed body is broken ("not_json", "schema"), or where a kill strikes (KILL_POINTS).
    variant: str = ""
    # "envelope" ({"event_id", "event_time", "features"}), or "bare" (the model input alone).
    body_format: str = "envelope"
    max_record_bytes: int = 256 * 1024
    _body: str | None = field(default=None, repr=False, compare=False)

    def body(self) -> str:
        """The body, made when first asked (at send time, so the event time is the send time)."""
        if self._body is None:
            self._body = self._make_body()
        return self._body

    def _make_body(self) -> str:
        features = self.features
        if self.fault == "malformed" and self.variant == "schema":
            features = dict(features, k=0)
        if self.fault == "oversize":
            # A real model input, just far too long: the handler must refuse it before the endpoint.
            padding = [f"i-{number % 400:04d}" for number in range(self.max_record_bytes // 9 + 1)]
            features = dict(features, recent_items=features["recent_items"] + padding)
        if self.body_format == "bare":
            document: Any = features
        else:
            event_time = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            document = {"event_id": self.event_id, "event_time": event_time, "features": features}
        body = json.dumps(document)
        if self.fault == "malformed" and self.variant == "not_json":
            # Cut off mid-way, as a producer that crashed while writing would leave it.
            body = body[: len(body) * 2 // 3]
        return body

    @property
    def marker(self) -> str:
        """What identifies this record inside an InvokeEndpoint body."""
        return f'/{self.event_id}"'


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
    ) -> FaultPlan:
        """`count` sample events; each gets one of FAULT_KINDS with probability `fault_rate`."""
        timings = timings or FaultTimings()
        rng = random.Random(seed)
        events: list[PlannedEvent] = []
        last_oversize_ten = -1
        for index, features in enumerate(draw_samples(count, seed)):
            event = plain_event(f"evt-{seed}-{index:06d}", features, body_format, timings)
            if rng.random() < fault_rate:
                kind = rng.choice(FAULT_KINDS)
                if kind == "oversize" and index // SEND_BATCH_SIZE == last_oversize_ten:
                    kind = "malformed"
                if kind == "oversize":
                    last_oversize_ten = index // SEND_BATCH_SIZE
                _apply_fault(event, kind, rng, timings)
            events.append(event)
        if outages is None:
            outages = max(1, count // EVENTS_PER_OUTAGE) if fault_rate > 0 and count >= 100 else 0
        planned_outages = [
            Outage(after_sent=int(count * (number + 0.5) / outages), seconds=timings.outage_seconds)
            for number in range(outages)
        ]
        return cls(events, planned_outages, timings, seed, fault_rate)

    @classmethod
    def healthy(cls, count: int, timings: FaultTimings | None = None, *, seed: int = 0) -> FaultPlan:
        """`count` events without faults, for a test to give chosen ones a fault by hand."""
        return cls.seeded(count, 0.0, seed, timings, outages=0)

    def kinds(self) -> Counter[str]:
        """How many events got each fault ("none" for the healthy ones)."""
        return Counter(event.fault or "none" for event in self.events)

    def by_event_id(self) -> dict[str, PlannedEvent]:
        return {event.event_id: event for event in self.events}


def plain_event(event_id: str, features: dict[str, Any], body_format: str, timings: FaultTimings) -> PlannedEvent:
    """An event without a fault; its user_id carries the marker endpoint faults match on."""
    marked = dict(features, user_id=f"{features['user_id']}/{event_id}")
    return PlannedEvent(event_id, marked, body_format=body_format, max_record_bytes=timings.max_record_bytes)


def _apply_fault(event: PlannedEvent, kind: str, rng: random.Random, timings: FaultTimings) -> None:
    event.fault = kind
    if kind == "malformed":
        event.variant = rng.choice(("not_json", "schema"))
    elif kind == "throttled":
        # At most one delivery short of maxReceiveCount: the record recovers without redrive.
        event.times = rng.randint(1, ENDPOINT_ATTEMPTS_PER_DELIVERY * (timings.max_receive_count - 1))
    elif kind == "sink_refused":
        event.times = rng.randint(1, timings.max_receive_count - 1)
    elif kind == "killed":
        event.variant = rng.choice(KILL_POINTS)


def event_id_of_prediction(document: Any) -> str | None:
    """The event a prediction belongs to, from the marker in its user_id (envelope or raw output)."""
    if not isinstance(document, dict):
        return None
    output = document.get("prediction", document)
    user_id = output.get("user_id") if isinstance(output, dict) else None
    found = EVENT_ID.search(user_id) if isinstance(user_id, str) else None
    return found.group(0) if found else None


def _prediction_body_event_id(body: str) -> str | None:
    # Cheap test first: feature bodies and dead letters pass through the same hooks.
    if '"prediction"' not in body and '"items"' not in body:
        return None
    try:
        return event_id_of_prediction(json.loads(body))
    except ValueError:
        return None


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
        self, kill_points: dict[str, str], handler_ref: str = APP_HANDLER, project_dir: Path = PROJECT_DIR
    ) -> None:
        self._kill_points = dict(kill_points)
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
                found = EVENT_ID.search(record_body(record))
                if found and found.group(0) in self._kill_points:
                    return self._kill_points.pop(found.group(0))
        return None

    def _run_and_kill(self, event: dict[str, Any], context: Any, point: str) -> Any:
        request = {
            "handler": self._handler_ref,
            "kill_point": point,
            "event": event,
            "remaining_ms": context.get_remaining_time_in_millis(),
            "context": {
                name: getattr(context, name, None)
                for name in ("function_name", "memory_limit_in_mb", "invoked_function_arn", "aws_request_id")
            },
        }
        # The child's log lines (the handler's, and a traceback if it crashes) belong with this
        # process's log, not on the terminal: a file, as a pipe could fill and stall the child.
        with tempfile.TemporaryFile(mode="w+") as child_log:
            child = subprocess.Popen(
                [sys.executable, "-m", __name__, "--invoke-until-killed"],
                cwd=self._project_dir,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=child_log,
                text=True,
            )
            try:
                assert child.stdin is not None and child.stdout is not None
                child.stdin.write(json.dumps(request))
                child.stdin.close()
                # A child that never gets there (it crashed, or hangs) is killed when the function would time out.
                readable, _, _ = select.select([child.stdout], [], [], request["remaining_ms"] / 1000 + 5)
                reached = child.stdout.readline().strip() if readable else ""
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait()
                if child.stdout is not None:
                    child.stdout.close()
            child_log.seek(0)
            for line in child_log:
                log.info(line.rstrip("\n"))
        message_ids = [record_message_id(record) for record in event["Records"]]
        with self._lock:
            self.killed.append((point, message_ids))
        raise InvocationKilled(
            f"invocation {request['context']['aws_request_id']} killed with SIGKILL "
            f"({reached or 'before reaching ' + point}); {len(message_ids)} records not deleted"
        )


class _ChildContext:
    """The Lambda context as the parent's invocation had it."""

    def __init__(self, request: dict[str, Any]) -> None:
        self._deadline = time.monotonic() + request["remaining_ms"] / 1000
        for name, value in request["context"].items():
            setattr(self, name, value)
        self.aws_request_id = self.aws_request_id or str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _invoke_until_killed() -> None:
    """Child side of HandlerKiller: run the handler, stop at the kill point, wait for SIGKILL."""
    request = json.loads(sys.stdin.read())
    logging.basicConfig(level=logging.ERROR)

    def stop_here(**_: Any) -> None:
        print(request["kill_point"], flush=True)
        time.sleep(ORPHAN_SECONDS)
        os._exit(1)

    boto3.setup_default_session()
    events = boto3.DEFAULT_SESSION.events
    if request["kill_point"] == "calling_endpoint":
        events.register("before-send.sagemaker-runtime.InvokeEndpoint", stop_here)
    elif request["kill_point"] == "publishing":
        events.register(f"after-call.{PUBLISH_OPERATION}", stop_here)
    module_name, function_name = request["handler"].split(":")
    handler = getattr(importlib.import_module(module_name), function_name)
    handler(request["event"], _ChildContext(request))
    stop_here()


class FaultInjection:
    """Applies a FaultPlan to one run of run_local_pipeline; enter it to get the PipelineHooks.

    On entry the sink refusals are hooked into a fresh default boto3 session, before the run
    creates any client. The endpoint faults are injected once the endpoint serves, outages start
    as the sending passes their mark, and the handler is wrapped by a HandlerKiller.
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
        self.killer = HandlerKiller(
            {event.event_id: event.variant for event in plan.events if event.fault == "killed"},
            handler_ref,
            project_dir,
        )
        self._refusals = {event.event_id: event.times for event in plan.events if event.fault == "sink_refused"}
        self._lock = threading.Lock()
        self._pending_outages = sorted(plan.outages, key=lambda outage: outage.after_sent)
        self._timers: list[threading.Timer] = []
        self._endpoint: LocalEndpoint | None = None
        self._stack = ExitStack()
        self.refused = 0
        self.outages_started = 0

    def __enter__(self) -> PipelineHooks:
        boto3.setup_default_session()
        events = boto3.DEFAULT_SESSION.events
        self._stack.enter_context(refuse_predictions(events, lambda message: self._refuse(message["body"])))
        return PipelineHooks(
            endpoint_ready=self._inject_endpoint_faults,
            wrap_handler=self._wrap,
            events_sent=self._start_due_outages,
            prediction_event_id=event_id_of_prediction,
        )

    def __exit__(self, *exc_info: object) -> None:
        for timer in self._timers:
            timer.cancel()
        self._stack.close()

    def _wrap(self, handler: Handler) -> Handler:
        return self.killer.wrap(self._handler_override or handler)

    def _refuse(self, body: str) -> bool:
        if not self._refusals:
            return False
        event_id = _prediction_body_event_id(body)
        with self._lock:
            if not self._refusals.get(event_id or "", 0):
                return False
            self._refusals[event_id] -= 1
            self.refused += 1
            return True

    def _inject_endpoint_faults(self, endpoint: LocalEndpoint) -> None:
        self._endpoint = endpoint
        for event in self.plan.events:
            if event.fault == "model_rejected":
                endpoint.inject(Fault(error="ModelError", match=event.marker))
            elif event.fault == "throttled":
                endpoint.inject(Fault(error="ThrottlingException", match=event.marker, times=event.times))
            elif event.fault == "slow":
                endpoint.inject(Fault(match=event.marker, times=1, delay_ms=self.plan.timings.slow_answer_ms))
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


def main(argv: list[str] | None = None) -> int:
    """Command line: `--invoke-until-killed` is the child side of HandlerKiller."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoke-until-killed", action="store_true", help="used by HandlerKiller")
    args = parser.parse_args(argv)
    if args.invoke_until_killed:
        _invoke_until_killed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
