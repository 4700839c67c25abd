# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make send`: sends feature events to a stage's features queue or stream, sample ones or a file's, as producers do.

    python -m template_tools.send --count 10 --stage dev
    python -m template_tools.send --file events.jsonl --stage dev

Sample events are model inputs drawn from model/samples.jsonl (or `--samples`), each in an
envelope of its own, as `make local` sends them.

A file (`make send FILE=...`) is JSON Lines, one event body per line: a model input or an
envelope around one, the same lines `make local FILE=...` and `make soak FILE=...` draw inputs
from; here each line is sent as it is, even one that is not JSON: the pipeline dead-letters
what it cannot read, which is what a producer's bad event does too (the count of such lines is
printed). A line holding a dead-letter export record
({"body": ..., "attributes": ...}, written by `make redrive DRY_RUN=1 EXPORT=...`) sends its body,
decoded first when the handler had to base64-encode it (attribute body_encoding, see redrive.py),
and with the event id and time of its first delivery, so it is sent as the same event (see
chalicelib/template_runtime/redelivery.py).
Each event goes under its model input's PARTITION_KEY_FIELD (the stage's), else its event_id.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from chalicelib.template_runtime.redelivery import DEAD_LETTER_EVENT_ID, DEAD_LETTER_EVENT_TIME, EventOrigin

from .features_producer import FeaturesProducer, OutgoingEvent
from .local_pipeline import model_input_schema_path, sample_events
from .model_samples import SAMPLES_FILE, SamplesError
from .operator_progress import Progress
from .operator_stage import operator_environment, run_command, where
from .redrive import original_body

# Events handed to the producer at a time: enough for whole batch calls, little enough that
# progress moves and a huge file is never held in memory.
EVENTS_PER_CHUNK = 500
# Refusals listed one by one before the rest are only counted.
REFUSALS_SHOWN = 10


class EventFileError(ValueError):
    """The file cannot be read as events; the message names the file and the line."""


@dataclass(frozen=True)
class FileLine:
    """One event of a file: the body to send byte for byte, and the line it came from."""

    number: int
    body: str
    # The group an export record kept (the FIFO MessageGroupId); empty: taken from the body.
    group: str = ""
    is_json: bool = True
    # An export record's event: its first delivery's id and time, which the copy carries.
    origin: EventOrigin | None = None


@dataclass
class SendReport:
    """How a send went: what was sent, what the source refused and why, which lines were not JSON."""

    sent: int = 0
    refused: list[tuple[str, str]] = field(default_factory=list)
    not_json: list[int] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [f"sent     {self.sent}", f"refused  {len(self.refused)}"]
        lines += [f"  {label}: {reason}" for label, reason in self.refused[:REFUSALS_SHOWN]]
        if len(self.refused) > REFUSALS_SHOWN:
            lines.append(f"  ... and {len(self.refused) - REFUSALS_SHOWN} more")
        if self.not_json:
            shown = ", ".join(str(number) for number in self.not_json[:REFUSALS_SHOWN])
            more = ", ..." if len(self.not_json) > REFUSALS_SHOWN else ""
            lines.append(f"not JSON {len(self.not_json)} line(s) ({shown}{more}): sent as is, to be dead-lettered")
        return lines


def read_event_file(path: Path) -> Iterator[FileLine]:
    """The events of a JSON Lines file, in order; blank lines are skipped.

    Raises EventFileError for a file that is missing, not a file, or not UTF-8 text.
    """
    try:
        stream = path.open("rb")
    except OSError as error:
        raise EventFileError(f"cannot read {path}: {error.strerror}") from None
    with stream:
        for number, raw in enumerate(stream, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise EventFileError(f"{path}:{number}: not UTF-8 text; is this a JSON Lines file?") from None
            line = text.rstrip("\r\n")
            if line.strip():
                yield _file_line(number, line)


def _file_line(number: int, line: str) -> FileLine:
    try:
        document = json.loads(line)
    except ValueError:
        return FileLine(number, line, is_json=False)
    is_export = isinstance(document, dict) and isinstance(document.get("body"), str)
    if is_export and isinstance(document.get("attributes"), dict):
        body = original_body(document["body"], document["attributes"])
        return FileLine(number, body, group=str(document.get("group") or ""), origin=_export_origin(document))
    return FileLine(number, line)


def _export_origin(document: dict) -> EventOrigin | None:
    """The event an export record is: its "event_id" and "event_time", else (an export written
    before they were) the handler's dead-letter attributes."""
    attributes = document["attributes"]
    if "event_id" in document:
        return EventOrigin.read(document["event_id"], document.get("event_time"))
    return EventOrigin.read(attributes.get(DEAD_LETTER_EVENT_ID), attributes.get(DEAD_LETTER_EVENT_TIME))


def count_events(path: Path) -> int:
    """How many events the file holds, for the progress line (a quick pass over the file)."""
    try:
        with path.open("rb") as stream:
            return sum(1 for raw in stream if raw.strip())
    except OSError as error:
        raise EventFileError(f"cannot read {path}: {error.strerror}") from None


def send_events(
    producer: FeaturesProducer,
    events: Iterable[tuple[str, OutgoingEvent]],
    progress: Progress,
    report: SendReport | None = None,
) -> SendReport:
    """Send labelled events in chunks, showing progress; the report names each refused label."""
    report = report or SendReport()
    chunk: list[tuple[str, OutgoingEvent]] = []

    def flush() -> None:
        outcomes = producer.send([event for _, event in chunk])
        for (label, _), outcome in zip(chunk, outcomes, strict=True):
            if outcome.message_id is None:
                report.refused.append((label, outcome.error))
            else:
                report.sent += 1
        chunk.clear()
        progress.show(report.sent + len(report.refused), f"{len(report.refused)} refused")

    for labelled in events:
        chunk.append(labelled)
        if len(chunk) == EVENTS_PER_CHUNK:
            flush()
    if chunk:
        flush()
    progress.close()
    return report


def file_events(
    lines: Iterable[FileLine], report: SendReport, deduplication_id: Callable[[FileLine], str]
) -> Iterator[tuple[str, OutgoingEvent]]:
    """The file's lines as events labelled `line N`, noting in `report` the lines that are not JSON."""
    for line in lines:
        if not line.is_json:
            report.not_json.append(line.number)
        # No group of its own: the producer keys it by the stage's PARTITION_KEY_FIELD.
        event = OutgoingEvent(line.body, line.group, deduplication_id(line), line.origin)
        yield f"line {line.number}", event


def producer_deduplication_id(line: FileLine) -> str:
    """What a producer would use: the event id (a resent event is the same event), else a hash of the body."""
    try:
        document = json.loads(line.body)
    except ValueError:
        document = None
    event_id = document.get("event_id") if isinstance(document, dict) else None
    if isinstance(event_id, str) and event_id:
        return event_id[:128]
    return hashlib.sha256(line.body.encode()).hexdigest()


def send_file(
    path: Path,
    producer: FeaturesProducer,
    deduplication_id: Callable[[FileLine], str],
    progress_stream: TextIO | None = sys.stderr,
) -> SendReport:
    """Send every event of a JSON Lines file (see the module docstring)."""
    total = count_events(path)
    report = SendReport()
    progress = Progress(f"sending {path.name}", total, progress_stream)
    return send_events(producer, file_events(read_event_file(path), report, deduplication_id), progress, report)


def send_samples(
    producer: FeaturesProducer,
    count: int,
    seed: int,
    malformed_rate: float,
    progress_stream: TextIO | None = sys.stderr,
    samples_path: Path = SAMPLES_FILE,
) -> SendReport:
    """Send `count` events of model inputs from `samples_path` (a seeded fraction of them broken,
    as `make local` does)."""
    samples = sample_events(
        count,
        seed,
        malformed_rate,
        samples_path=samples_path,
        schema_path=model_input_schema_path(SAMPLES_FILE.parent),
    )
    events = []
    for sample in samples:
        # No group of its own: the producer keys it by the stage's PARTITION_KEY_FIELD.
        events.append((sample.event_id, OutgoingEvent(sample.body(), "", sample.event_id)))
    return send_events(producer, events, Progress("sending samples", count, progress_stream))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--file",
        type=Path,
        help="JSON Lines file of event bodies (model inputs or envelopes) to send as they are (default: sample events)",
    )
    parser.add_argument(
        "--samples",
        type=Path,
        default=SAMPLES_FILE,
        help="model inputs the sample events are drawn from (default model/samples.jsonl)",
    )
    parser.add_argument("--count", type=int, default=10, help="sample events to send without --file (default 10)")
    parser.add_argument("--seed", type=int, help="seed of the sample events (default: a new one each run)")
    parser.add_argument(
        "--malformed-rate", type=float, default=0.0, help="fraction of broken sample events (default 0)"
    )
    parser.add_argument("--stage", default="dev", help="Chalice stage whose source to send to (default dev)")
    args = parser.parse_args(argv)

    def command() -> int:
        producer = FeaturesProducer(operator_environment(args.stage))
        print(f"sending to {producer.name} ({where()})")
        if args.file is not None:
            report = send_file(args.file, producer, producer_deduplication_id)
        else:
            # A new seed each run: the sample's event ids differ, so a FIFO queue does not drop
            # a second run within its 5-minute deduplication window.
            seed = args.seed if args.seed is not None else secrets.randbelow(1_000_000)
            print(f"{args.count} sample events, seed {seed}")
            report = send_samples(producer, args.count, seed, args.malformed_rate, samples_path=args.samples)
        print("\n".join(report.lines()))
        return 1 if report.refused else 0

    try:
        return run_command(command)
    except (EventFileError, SamplesError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
