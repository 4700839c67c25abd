# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Soak test in local mode: many events, a seeded mix of faults, and an exact ledger at the end.

    python -m template_tools.soak --count 5000 --fault-rate 0.05 --seed 7 [--handler naive] [--file events.jsonl]

Runs the local pipeline (emulator, local endpoint, Lambda-like trigger) with the faults of a
seeded FaultPlan (see fault_plan.py) and then accounts for every event: each one must be in the
predictions (once or more: duplicates are counted) or in the dead-letter queue with a reason,
either the handler's error code or the source's own giving up, or, with a table destination,
superseded (the table already held a newer prediction of its key). A queue gives up after
maxReceiveCount deliveries: the handler, told it as the stack tells the deployed function,
dead-letters a record that fails on its last delivery with its code and "(delivery N of N)"
(counted as "<code> (last delivery)"), and the queue's redrive moves one whose last invocation
could not answer (killed, timed out), without a reason; a stream's on-failure destination gets
a batch after MaximumRetryAttempts retries.
Exits 1 when an event is lost or its outcome contradicts its fault (a malformed record
predicted, a healthy one dead-lettered by the handler, a prediction the destination refuses for
good dead-lettered with another reason than the handler's PredictionRefused).

The faults include an endpoint that answers later than the whole function timeout (stalled): the
handler must give up on the call in time, or the local trigger stops the invocation at the
function timeout as Lambda does, and its whole batch comes back (lambda_trigger.py).

The events' inputs are model/samples.jsonl's, or `--file`'s (JSON Lines of the team's own events:
model inputs or envelopes, whose `features` is taken), whatever the model's fields: the faults
never touch an input's fields, except to break a body on purpose (fault_plan.py). With more
events than inputs, inputs repeat, and every event of an input shares that input's endpoint
fault. Each prediction envelope names its event (event_id), so the ledger is exact per event.

`--handler naive` runs the same plan through naive_handler (Sagify's handler on this source:
one record after the other, each prediction published on its own, raise on the first error)
with no dead-letter queue, since Sagify deploys none: a queue without a redrive policy, a stream
trigger retrying a failing batch until its records expire. Bodies are in its format (the bare
model input). Records behind a failing one come back forever (a shard stops behind it), so that
run ends a minute after the last event is sent; what is still undelivered then would circulate
until the source's retention drops it: it is counted as stranded, and the events never predicted
as lost.
Its predictions are the model's raw answers, with no event id: the ledger asks the local endpoint
for each input's answer before the run and traces each raw answer back to the events whose input
gets it. Where several events share an answer (an input sent more than once, or a model that
answers several inputs alike) the arrivals are shared out among them, fewest first: the count of
predicted events is exact, which of them it was is not, and one event's duplicate can hide
another's loss. With no more events than distinct samples (COUNT at most the lines of
model/samples.jsonl) and a model that answers each input differently, it is exact per event.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import naive_handler
from .fault_plan import PERMANENT_FAULT_CODES, FaultInjection, FaultPlan, FaultTimings
from .local_pipeline import (
    EXERCISE_TRIGGER_LIMITS,
    EndpointStartError,
    PipelineSummary,
    handler_log,
    run_local_pipeline,
)
from .model_samples import SamplesError
from .source import TRIGGER_DEAD_LETTER_REASON, retry_settings
from .stage import PROJECT_DIR, UnknownStageError, patched_environ

HANDLERS = ("app", "naive")
NAIVE_HANDLER = f"{__package__}.naive_handler:handle_feature_events"
# More in flight than `make local` uses: records waiting out a visibility timeout would
# otherwise hold the sender back for the whole wait.
MAX_IN_FLIGHT = 150
# How long the naive run goes on after its last event is sent: records stuck behind a poisonous
# one keep coming back (until retention, 4 days by default); a minute shows the pattern.
NAIVE_SETTLE_SECONDS = 60
# The handler's note on a record it dead-lettered on its last delivery (batch.last_delivery):
# "<code>: <reason> (delivery 2 of 2)". The source gave up on it, as a redrive would have.
_LAST_DELIVERY_NOTE = re.compile(r"\(delivery (\d+) of \1\)$")
# How the ledger counts such a dead letter: its code, and that the source had given up.
LAST_DELIVERY_SUFFIX = " (last delivery)"


@dataclass
class EventOutcome:
    """What became of one planned event."""

    fault: str
    predictions: int
    # The reason of each dead-letter arrival: the handler's error_code, that code with
    # LAST_DELIVERY_SUFFIX when the handler gave up on the record's last delivery, or
    # TRIGGER_DEAD_LETTER_REASON when the source moved it itself.
    dead_letters: list[str]
    # Not stored because the destination already held a newer prediction of its key.
    superseded: bool = False

    @property
    def accounted(self) -> bool:
        return bool(self.predictions or self.dead_letters or self.superseded)

    @property
    def extra_copies(self) -> int:
        return max(0, self.predictions + len(self.dead_letters) - 1)

    @property
    def extra_predictions(self) -> int:
        return max(0, self.predictions - 1)

    def contradiction(self) -> str | None:
        """Why this outcome cannot be right for this fault, or None.

        A record predicted and later given up on by its source is not one: an invocation that
        published and was then killed or timed out leaves it in the queue, and at-least-once
        delivery may then bring it back until its last delivery, where the handler dead-letters it
        with a passing failure's reason (an outage) or the redrive moves it. Nor is a record of any
        fault given up on so. The handler itself calling a predicted record a permanent failure is one.
        """
        expected = PERMANENT_FAULT_CODES.get(self.fault)
        if expected is not None and self.predictions:
            return f"{self.fault} record predicted"
        handler_codes = {reason for reason in self.dead_letters if not source_gave_up(reason)}
        if handler_codes and self.predictions:
            return f"both predicted and dead-lettered as {', '.join(sorted(handler_codes))}"
        if handler_codes and not handler_codes <= (expected or frozenset()):
            return f"{self.fault} record dead-lettered as {', '.join(sorted(handler_codes))}"
        return None


@dataclass
class SoakLedger:
    """Every event of a soak run, where it ended, and the figures that must add up."""

    handler: str
    plan: FaultPlan
    summary: PipelineSummary
    outcomes: dict[str, EventOutcome]
    killed_invocations: int
    refused_predictions: int
    outages: int
    # Publishes the destination refused for good (sink_invalid), attempts included.
    rejected_predictions: int
    # Invocations the local trigger stopped at the function timeout.
    timed_out_invocations: int
    elapsed_seconds: float
    contradictions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, plan: FaultPlan, summary: PipelineSummary, injection: FaultInjection, handler: str, elapsed: float):
        ledger = summary.ledger
        assert ledger is not None
        outcomes = {}
        for event in plan.events:
            message_id = ledger.message_ids.get(event.event_id, "")
            arrivals = ledger.dead_letter_arrivals.get(message_id, [])
            outcomes[event.event_id] = EventOutcome(
                fault=event.fault or "none",
                predictions=ledger.prediction_arrivals.get(message_id, 0),
                dead_letters=[dead_letter_reason(message) for message in arrivals],
                superseded=message_id in ledger.superseded,
            )
        contradictions = {
            event_id: reason
            for event_id, outcome in outcomes.items()
            if (reason := outcome.contradiction()) and _fault_was_met(event_id, outcome, injection, handler)
        }
        return cls(
            handler=handler,
            plan=plan,
            summary=summary,
            outcomes=outcomes,
            killed_invocations=len(injection.killer.killed),
            refused_predictions=injection.refused,
            outages=injection.outages_started,
            rejected_predictions=injection.rejected_as_invalid,
            timed_out_invocations=summary.timed_out,
            elapsed_seconds=elapsed,
            contradictions=contradictions,
        )

    @property
    def sent(self) -> int:
        return self.summary.sent

    @property
    def predicted(self) -> int:
        return sum(1 for outcome in self.outcomes.values() if outcome.predictions)

    @property
    def dead_lettered(self) -> Counter[str]:
        """Events whose first outcome was a dead letter, by reason."""
        return Counter(
            outcome.dead_letters[0]
            for outcome in self.outcomes.values()
            if outcome.dead_letters and not outcome.predictions
        )

    @property
    def duplicates(self) -> int:
        """Copies beyond the first of any event's outcome (the features message id repeats)."""
        return sum(outcome.extra_copies for outcome in self.outcomes.values())

    @property
    def extra_predictions(self) -> int:
        return sum(outcome.extra_predictions for outcome in self.outcomes.values())

    @property
    def lost(self) -> int:
        """Events neither predicted nor dead-lettered, sent or not."""
        return sum(1 for outcome in self.outcomes.values() if not outcome.accounted)

    @property
    def misreported(self) -> int:
        return len(self.contradictions)

    @property
    def passed(self) -> bool:
        return self.lost == 0 and self.misreported == 0

    def table(self) -> str:
        """The ledger as printed by `make soak`."""
        plan, summary = self.plan, self.summary
        timings = plan.timings
        kinds = plan.kinds()
        dead = self.dead_lettered
        rows: list[tuple[str, str]] = [
            ("handler", _HANDLER_TITLES[self.handler]),
            (
                "plan",
                f"{len(plan.events)} events, fault rate {plan.fault_rate}, seed {plan.seed}; "
                f"{retry_settings(timings, naive=self.handler != 'app')}, "
                f"function timeout {timings.function_timeout_seconds} s",
            ),
            ("faults", ", ".join(f"{kind} {kinds[kind]}" for kind in kinds if kind != "none") or "none"),
            (
                "injected",
                f"{self.outages} endpoint outage(s) of {timings.outage_seconds:.0f} s, "
                f"{self.killed_invocations} invocation(s) killed, {self.refused_predictions} publish(es) refused, "
                f"{self.rejected_predictions} refused for good",
            ),
            ("sent", str(self.sent)),
            ("predicted", str(self.predicted)),
            ("dead-lettered", str(sum(dead.values()))),
            *((f"  {reason}", str(count)) for reason, count in sorted(dead.items())),
            *([("superseded", str(summary.superseded))] if summary.superseded is not None else []),
            (
                "duplicates",
                f"{self.duplicates} ({self.extra_predictions} predictions published again, "
                f"{self.duplicates - self.extra_predictions} dead letters of records already out)",
            ),
            ("misreported", str(self.misreported)),
            ("stranded", f"{summary.stranded} (still in the features queue: lost when retention expires)"),
            ("unsent", str(summary.unsent)),
            ("deliveries", f"{summary.deliveries} ({summary.deliveries - self.sent} redeliveries)"),
            (
                "invocations",
                f"{summary.invocations} ({summary.failed_batches} failed as a whole, "
                f"{self.timed_out_invocations} stopped at the function timeout)",
            ),
            ("elapsed", f"{self.elapsed_seconds:.1f} s"),
            ("lost", str(self.lost)),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"{name:<{width}}  {value}" for name, value in rows]
        lines += ["", self._by_fault_table()]
        for event_id, reason in list(self.contradictions.items())[:10]:
            lines.append(f"misreported: {event_id}: {reason}")
        return "\n".join(lines)

    def _by_fault_table(self) -> str:
        header = ("fault", "events", "predicted", "dead-lettered", "duplicates", "lost")
        rows = [header]
        for kind in ("none", *sorted(kind for kind in self.plan.kinds() if kind != "none")):
            outcomes = [outcome for outcome in self.outcomes.values() if outcome.fault == kind]
            rows.append(
                (
                    kind,
                    str(len(outcomes)),
                    str(sum(1 for o in outcomes if o.predictions)),
                    str(sum(1 for o in outcomes if o.dead_letters and not o.predictions)),
                    str(sum(o.extra_copies for o in outcomes)),
                    str(sum(1 for o in outcomes if not o.accounted)),
                )
            )
        widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
        return "\n".join(
            "  ".join(
                cell.ljust(width) if column == 0 else cell.rjust(width)
                for column, (cell, width) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        )


_HANDLER_TITLES = {
    "app": "app.handle_feature_events (this project's handler)",
    "naive": "naive_handler (Sagify's way: per record, raise on the first error, no dead-letter queue)",
}


def _fault_was_met(event_id: str, outcome: EventOutcome, injection: FaultInjection, handler: str) -> bool:
    """Whether the event met its fault, so its outcome can contradict it.

    Only the naive handler can miss one: it publishes each prediction on its own (SendMessage,
    Publish, PutRecord), which the destination's refusals, made for the handler's batch call, do
    not reach, so a sink_invalid prediction of it is published as any other.
    """
    return handler == "app" or outcome.fault != "sink_invalid" or event_id in injection.rejected_event_ids


def source_gave_up(reason: str) -> bool:
    """Whether a dead letter's reason (as EventOutcome counts it) says the source stopped delivering
    the record, rather than the handler finding it could never be predicted."""
    return reason == TRIGGER_DEAD_LETTER_REASON or reason.endswith(LAST_DELIVERY_SUFFIX)


def dead_letter_reason(message: dict[str, Any]) -> str:
    """How the ledger counts a dead letter: the handler's code, marked when given on the last delivery, or
    TRIGGER_DEAD_LETTER_REASON for a record the source moved itself (no handler attributes)."""
    attributes = message.get("MessageAttributes", {})
    code = attributes.get("error_code", {}).get("StringValue")
    if not code:
        return TRIGGER_DEAD_LETTER_REASON
    if _LAST_DELIVERY_NOTE.search(attributes.get("error_reason", {}).get("StringValue", "")):
        return code + LAST_DELIVERY_SUFFIX
    return code


def run_soak(
    plan: FaultPlan,
    *,
    handler: str = "app",
    model_dir: Path | None = None,
    project_dir: Path = PROJECT_DIR,
    max_in_flight: int = MAX_IN_FLIGHT,
    progress: TextIO | None = sys.stderr,
) -> SoakLedger:
    """Run `plan` through the local pipeline with `handler` ("app" or "naive") and build the ledger."""
    if handler not in HANDLERS:
        raise ValueError(f"handler must be one of {HANDLERS}")
    naive = handler == "naive"
    timings = plan.timings
    injection = FaultInjection(
        plan,
        handler_ref=NAIVE_HANDLER if naive else "app:handle_feature_events",
        project_dir=project_dir,
        handler_override=naive_handler.handle_feature_events if naive else None,
    )
    # Long enough to sit out an outage and the redeliveries after it.
    stall_seconds = timings.outage_seconds + timings.visibility_timeout_seconds + timings.function_timeout_seconds + 10
    started = time.monotonic()
    # The naive handler keeps its clients per process: they must be made for this run's emulator.
    naive_handler.reset_clients()
    try:
        with patched_environ(timings.handler_environment()), injection as hooks:
            summary = run_local_pipeline(
                len(plan.events),
                plan.seed,
                0.0,
                project_dir=project_dir,
                model_dir=model_dir,
                visibility_timeout_seconds=timings.visibility_timeout_seconds,
                stall_timeout_seconds=stall_seconds,
                max_in_flight=max_in_flight,
                progress=progress,
                events=plan.events,
                max_receive_count=None if naive else timings.max_receive_count,
                function_timeout_seconds=timings.function_timeout_seconds,
                hooks=hooks,
                settle=True,
                # Without a dead-letter queue, records that keep failing must not hold the sender back,
                # and the run must end while they still circulate.
                stuck_after_seconds=timings.outage_seconds if naive else None,
                settle_limit_seconds=NAIVE_SETTLE_SECONDS if naive else None,
                trigger_limits=EXERCISE_TRIGGER_LIMITS,
            )
    finally:
        naive_handler.reset_clients()
    return SoakLedger.build(plan, summary, injection, handler, time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    """Command line: run the soak, print the ledger, exit 1 when an event is lost or misreported."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = FaultTimings()
    parser.add_argument("--count", type=int, default=500, help="events to send (default 500)")
    parser.add_argument("--fault-rate", type=float, default=0.05, help="share of events given a fault (default 0.05)")
    parser.add_argument("--seed", type=int, default=7, help="seed for the events and the fault plan (default 7)")
    parser.add_argument("--handler", choices=HANDLERS, default="app", help="app (default) or naive, for comparison")
    parser.add_argument(
        "--file",
        type=Path,
        help="JSON Lines of your own events (model inputs or envelopes) to draw from (default model/samples.jsonl)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=defaults.visibility_timeout_seconds,
        help="features queue visibility timeout in seconds (default %(default)s)",
    )
    parser.add_argument(
        "--max-receive-count", type=int, default=defaults.max_receive_count, help="redrive after (default %(default)s)"
    )
    parser.add_argument(
        "--function-timeout", type=int, default=defaults.function_timeout_seconds, help="seconds (default %(default)s)"
    )
    parser.add_argument("--max-in-flight", type=int, default=MAX_IN_FLIGHT, help="default %(default)s")
    parser.add_argument(
        "--log-file", type=Path, default=Path("soak-handler.log"), help="handler log lines (default %(default)s)"
    )
    args = parser.parse_args(argv)
    timings = FaultTimings(
        visibility_timeout_seconds=args.visibility_timeout,
        max_receive_count=args.max_receive_count,
        function_timeout_seconds=args.function_timeout,
    )
    body_format = "bare" if args.handler == "naive" else "envelope"
    try:
        # Every kind of fault at least once, however low the rate: a soak that never met one proves nothing of it.
        plan = FaultPlan.seeded(
            args.count,
            args.fault_rate,
            args.seed,
            timings,
            body_format=body_format,
            samples_path=args.file,
            every_kind=True,
        )
        with handler_log(args.log_file):
            ledger = run_soak(plan, handler=args.handler, max_in_flight=args.max_in_flight)
    except (UnknownStageError, SamplesError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except EndpointStartError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(ledger.table())
    print(f"handler log    {args.log_file}")
    if not ledger.passed:
        print(f"soak failed: {ledger.lost} lost, {ledger.misreported} misreported", file=sys.stderr)
    return 0 if ledger.passed else 1


if __name__ == "__main__":
    sys.exit(main())
