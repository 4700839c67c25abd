# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make redrive`: moves dead-letter messages back to the features queue or stream, or (dry run) shows what is there.

    python -m template_tools.redrive --dry-run [--export dead-letters.jsonl] --stage dev
    python -m template_tools.redrive --stage dev

The dry run counts the messages by reason (the handler's error_code, or the source's reason for
what the trigger itself dead-lettered: "redrive (maxReceiveCount)" for those a queue's redrive
policy moved, "retries exhausted (on-failure destination)" for the batches a Kinesis trigger gave
up on), shows a few ids of each, and can export them as JSON Lines for `make replay`; it moves
nothing (the messages it looked at are made visible again at once).

Both look only at the messages that were in the dead-letter queue when they started: while the
pipeline runs, a redriven record that fails again comes back as a new message, and is left for
the next run (by its SentTimestamp, compared with this machine's clock).

The real run re-sends each message it receives, body byte for byte (in its message group, for a
FIFO queue), and deletes it from the dead-letter queue only once the send succeeded: a crash in
between sends it twice rather than losing it. What could not be sent stays in the dead-letter
queue, so running the redrive again only retries what is left. A FIFO queue's
MessageDeduplicationId is derived from the dead-letter message id, so a second run within
5 minutes of a crash does not send it twice.

What a message stands for is the source's (source.DeadLetterEvents): a Kinesis trigger's
on-failure messages hold no records, only a shard and a range of sequence numbers, which the
redrive reads back from the stream and re-puts with their partition keys. A range the stream no
longer holds (past its retention) is reported as unrecoverable and left in the dead-letter queue.

Each record sent again stays the same event: it carries its first delivery's event id and time
(chalicelib/template_runtime/redelivery.py; see dead_letter_origin), so consumers drop it as a
duplicate of a prediction already published, and a newest-wins destination does not take an old
event for a new one. A dry run's export writes them too, as "event_id" and "event_time", for
`make replay`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from chalicelib.template_runtime.batch import BASE64_BODY, BODY_ENCODING_ATTRIBUTE, EMPTY_BODY
from chalicelib.template_runtime.redelivery import (
    DEAD_LETTER_EVENT_ID,
    DEAD_LETTER_EVENT_TIME,
    ORIGINAL_EVENT_ID,
    ORIGINAL_EVENT_TIME,
    EventOrigin,
    iso_time_from_ms,
)

from .features_producer import FeaturesProducer, OutgoingEvent, event_group
from .operator_progress import Progress
from .operator_stage import operator_environment, run_command, where
from .source import TRIGGER_DEAD_LETTER_REASON, DeadLetterEvents, exports_records

# How long a received message stays hidden from other readers: long enough to re-send it and
# delete it; a dry run hands its messages back at once when it is done.
VISIBILITY_TIMEOUT_SECONDS = 300
# Long polling asks every SQS server, so an empty answer means the queue is empty, not that one
# server had nothing.
RECEIVE_WAIT_SECONDS = 1
# Ids shown per reason in a dry run.
SAMPLE_IDS = 5


@dataclass(frozen=True)
class DeadLetter:
    """One dead-letter queue message, and what re-sending it means."""

    message_id: str
    receipt_handle: str
    body: str
    attributes: dict[str, str]
    group: str
    reason: str
    # When SQS took it into the dead-letter queue, in epoch milliseconds.
    sent_at_ms: int
    # What goes back to the features queue or stream; empty when it cannot (see `unrecoverable`).
    events: tuple[OutgoingEvent, ...]
    unrecoverable: str = ""
    # The event the message is, when it is one (not a Kinesis on-failure message): see dead_letter_origin.
    origin: EventOrigin | None = None

    def export_record(self) -> dict[str, Any]:
        """The message as a line of the dead-letter export `make replay` takes."""
        record = {"message_id": self.message_id, "body": self.body, "attributes": self.attributes, "group": self.group}
        return record | origin_fields(self.origin)


def origin_fields(origin: EventOrigin | None) -> dict[str, str]:
    """An export line's "event_id" and "event_time": the event's first delivery, which a replay keeps."""
    if origin is None:
        return {}
    return {"event_id": origin.event_id} | ({"event_time": origin.event_time} if origin.event_time else {})


@dataclass
class Inspection:
    """What a dry run saw in the dead-letter queue."""

    approximate_depth: int
    messages: list[DeadLetter] = field(default_factory=list)

    def by_reason(self) -> dict[str, list[DeadLetter]]:
        grouped: dict[str, list[DeadLetter]] = {}
        for message in self.messages:
            grouped.setdefault(message.reason, []).append(message)
        return dict(sorted(grouped.items(), key=lambda item: (-len(item[1]), item[0])))

    def lines(self) -> list[str]:
        lines = [f"{len(self.messages)} message(s) (SQS reports about {self.approximate_depth})"]
        grouped = self.by_reason()
        if grouped:
            width = max(len("reason"), *(len(reason) for reason in grouped))
            lines.append(f"  {'reason':<{width}}  count  sample ids")
            for reason, messages in grouped.items():
                ids = ", ".join(message.message_id for message in messages[:SAMPLE_IDS])
                lines.append(f"  {reason:<{width}}  {len(messages):>5}  {ids}")
        unrecoverable = [message for message in self.messages if message.unrecoverable]
        for message in unrecoverable[:SAMPLE_IDS]:
            lines.append(f"  unrecoverable {message.message_id}: {message.unrecoverable}")
        if len(unrecoverable) > SAMPLE_IDS:
            lines.append(f"  ... {len(unrecoverable)} unrecoverable in all")
        return lines


@dataclass
class RedriveReport:
    """What a real run did with each message it received."""

    moved: int = 0
    events_sent: int = 0
    # Message id -> why it is still in the dead-letter queue.
    send_refused: dict[str, str] = field(default_factory=dict)
    unrecoverable: dict[str, str] = field(default_factory=dict)
    # Sent, but the delete failed: the next redrive sends it again.
    not_deleted: dict[str, str] = field(default_factory=dict)
    by_reason: Counter[str] = field(default_factory=Counter)

    @property
    def left_behind(self) -> int:
        return len(self.send_refused) + len(self.unrecoverable)

    def lines(self) -> list[str]:
        lines = [f"moved back     {self.moved} message(s), {self.events_sent} event(s) sent"]
        lines += [f"  {reason}: {count}" for reason, count in self.by_reason.most_common()]
        for label, problems in (
            ("send refused", self.send_refused),
            ("unrecoverable", self.unrecoverable),
            ("not deleted", self.not_deleted),
        ):
            if problems:
                note = "left in the dead-letter queue"
                if label == "not deleted":
                    note = "sent; the next redrive sends it again"
                lines.append(f"{label:<14} {len(problems)} ({note})")
                lines += [f"  {message_id}: {reason}" for message_id, reason in list(problems.items())[:SAMPLE_IDS]]
        return lines


class DeadLetterQueue:
    """The stage's dead-letter queue, read a batch at a time."""

    def __init__(self, environment: Mapping[str, str], wait_seconds: int = RECEIVE_WAIT_SECONDS) -> None:
        # Messages SQS took in after this moment arrived during the run: a run leaves them alone,
        # hidden until it ends so that its receives get to the earlier ones.
        self.opened_at_ms = int(time.time() * 1000)
        self._held_back: list[DeadLetter] = []
        self._sqs = boto3.client("sqs", config=Config(retries={"mode": "standard", "total_max_attempts": 5}))
        self.name = environment["DEAD_LETTER_QUEUE_NAME"]
        self.url = self._sqs.get_queue_url(QueueName=self.name)["QueueUrl"]
        self._wait_seconds = wait_seconds
        self._events = DeadLetterEvents(environment)

    def approximate_depth(self) -> int:
        attributes = self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"])
        return int(attributes["Attributes"]["ApproximateNumberOfMessages"])

    def receive(self) -> list[DeadLetter]:
        """Up to 10 messages that were there when the queue was opened, hidden from other readers
        for VISIBILITY_TIMEOUT_SECONDS; none when there are no more."""
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=10,
                WaitTimeSeconds=self._wait_seconds,
                VisibilityTimeout=VISIBILITY_TIMEOUT_SECONDS,
                MessageAttributeNames=["All"],
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            received = [self._dead_letter(message) for message in messages]
            earlier = [message for message in received if message.sent_at_ms <= self.opened_at_ms]
            self._held_back += [message for message in received if message.sent_at_ms > self.opened_at_ms]
            if earlier or not received:
                return earlier

    def release_held_back(self) -> None:
        """Make the messages that arrived during the run visible again, for the next run."""
        self.release(self._held_back)
        self._held_back = []

    def delete(self, messages: Sequence[DeadLetter]) -> dict[str, str]:
        """Delete the messages; return {message id: reason} for those SQS did not delete."""
        if not messages:
            return {}
        response = self._sqs.delete_message_batch(
            QueueUrl=self.url,
            Entries=[{"Id": str(n), "ReceiptHandle": message.receipt_handle} for n, message in enumerate(messages)],
        )
        return {messages[int(entry["Id"])].message_id: entry["Code"] for entry in response.get("Failed", [])}

    def release(self, messages: Sequence[DeadLetter]) -> None:
        """Make the messages visible again at once (what a dry run looked at stays where it was)."""
        for start in range(0, len(messages), 10):
            batch = messages[start : start + 10]
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": message.receipt_handle, "VisibilityTimeout": 0}
                    for n, message in enumerate(batch)
                ],
            )

    def _dead_letter(self, message: dict[str, Any]) -> DeadLetter:
        attributes = {
            name: value["StringValue"]
            for name, value in message.get("MessageAttributes", {}).items()
            if "StringValue" in value
        }
        body = message["Body"]
        group = message.get("Attributes", {}).get("MessageGroupId", "")
        reason = attributes.get("error_code") or TRIGGER_DEAD_LETTER_REASON
        resent, unrecoverable = self._events.read(
            message["MessageId"], original_body(body, attributes), group, attributes.get("error_code"), event_group
        )
        # A message that is the event itself sends the event's identity along; one that stands for
        # stream records (an on-failure message) has the source name each record's.
        origin = None if exports_records(body) else dead_letter_origin(message, attributes)
        events = tuple(
            replace(event, origin=origin) if event.origin is None else event
            for event in (OutgoingEvent(*resent_event) for resent_event in resent)
        )
        return DeadLetter(
            message_id=message["MessageId"],
            receipt_handle=message["ReceiptHandle"],
            body=body,
            attributes=attributes,
            group=group,
            reason=reason,
            sent_at_ms=int(message.get("Attributes", {}).get("SentTimestamp", 0)),
            events=events,
            unrecoverable=unrecoverable,
            origin=origin,
        )


def dead_letter_origin(message: Mapping[str, Any], attributes: Mapping[str, str]) -> EventOrigin:
    """The first delivery's event id and time of the event a dead-letter message is.

    The handler's dead-letter record names them in its attributes event_id and event_time (one
    written before it did names its record in source_message_id alone). A message the features
    queue's redrive policy moved is the features message itself, attributes and all: a copy sent
    again still carries original_event_id and original_event_time; any other is known by its own
    MessageId, which SQS keeps, and SentTimestamp. A standard queue keeps the original enqueue
    time when it moves a message; a FIFO queue resets it ("For FIFO queues, the enqueue timestamp
    resets when the message is moved to a dead-letter queue", SQS Developer Guide, "Setting-up
    dead-letter queue retention in Amazon SQS":
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/setting-up-dead-letter-queue-retention.html),
    so there a bare input the queue moved counts from its move; an envelope's event_time holds.
    """
    if "error_code" in attributes:
        event_id = attributes.get(DEAD_LETTER_EVENT_ID) or attributes.get("source_message_id")
        origin = EventOrigin.read(event_id, attributes.get(DEAD_LETTER_EVENT_TIME))
    else:
        origin = EventOrigin.read(attributes.get(ORIGINAL_EVENT_ID), attributes.get(ORIGINAL_EVENT_TIME))
    if origin is not None:
        return origin
    sent = message.get("Attributes", {}).get("SentTimestamp")
    return EventOrigin(message["MessageId"], iso_time_from_ms(int(sent)) if sent else "")


def original_body(body: str, attributes: Mapping[str, str]) -> str:
    """A dead letter's body as the record arrived: the handler sends one SQS cannot carry base64-encoded,
    and an empty one as a placeholder text.

    The bytes are decoded with surrogateescape, so bytes that are not UTF-8 (a Kinesis record's)
    come back byte for byte when the sender encodes them the same way.
    """
    encoding = attributes.get(BODY_ENCODING_ATTRIBUTE)
    if encoding == EMPTY_BODY:
        return ""
    if encoding != BASE64_BODY:
        return body
    try:
        return base64.b64decode(body, validate=True).decode("utf-8", "surrogateescape")
    except binascii.Error:
        # Not what the handler writes: sent as it is rather than not at all.
        return body


def inspect(queue: DeadLetterQueue) -> Inspection:
    """Look at every message once, then make them all visible again; moves nothing.

    A FIFO queue hides a group's later messages while its earlier ones are being looked at, so
    there a group with more than 10 messages shows its first ones only (the count says how many
    SQS holds).
    """
    inspection = Inspection(approximate_depth=queue.approximate_depth())
    seen: set[str] = set()
    try:
        while batch := [message for message in queue.receive() if message.message_id not in seen]:
            seen.update(message.message_id for message in batch)
            inspection.messages.extend(batch)
    finally:
        queue.release(inspection.messages)
        queue.release_held_back()
    return inspection


def redrive(queue: DeadLetterQueue, producer: FeaturesProducer, progress: Progress) -> RedriveReport:
    """Re-send every message received and delete each one whose send succeeded (see the module docstring)."""
    report = RedriveReport()
    attempted: set[str] = set()
    left_behind: list[DeadLetter] = []
    try:
        # A message refused earlier in this run comes back when its visibility timeout ends; the
        # run ends rather than retrying it forever.
        while batch := [message for message in queue.receive() if message.message_id not in attempted]:
            attempted.update(message.message_id for message in batch)
            sendable = []
            for message in batch:
                if message.unrecoverable:
                    report.unrecoverable[message.message_id] = message.unrecoverable
                    left_behind.append(message)
                else:
                    sendable.append(message)
            sent = _send(sendable, producer, report)
            left_behind += [message for message in sendable if message.message_id in report.send_refused]
            report.not_deleted.update(queue.delete(sent))
            for message in sent:
                report.moved += 1
                report.events_sent += len(message.events)
                report.by_reason[message.reason] += 1
            progress.show(len(attempted), f"{report.moved} moved, {report.left_behind} left")
    finally:
        progress.close()
        # What stays in the dead-letter queue is visible again at once, for the next run.
        queue.release(left_behind)
        queue.release_held_back()
    return report


def _send(messages: Sequence[DeadLetter], producer: FeaturesProducer, report: RedriveReport) -> list[DeadLetter]:
    """Send the messages' events; return the messages all of whose events were accepted."""
    outcomes = producer.send([event for message in messages for event in message.events])
    sent = []
    position = 0
    for message in messages:
        own = outcomes[position : position + len(message.events)]
        position += len(message.events)
        refusals = [outcome.error for outcome in own if outcome.message_id is None]
        if refusals:
            report.send_refused[message.message_id] = refusals[0]
        else:
            sent.append(message)
    return sent


def export(messages: Sequence[DeadLetter], path: Path) -> None:
    """Write the messages as JSON Lines {"message_id", "body", "attributes", "group", "event_id", "event_time"}."""
    with path.open("w", encoding="utf-8") as stream:
        for message in messages:
            # A message that stands for other records (a Kinesis on-failure message): export
            # those, so a replay sends events.
            if message.events and exports_records(message.body):
                for event in message.events:
                    record = message.export_record() | {"body": event.body, "group": event.group}
                    record |= origin_fields(event.origin)
                    stream.write(json.dumps(record) + "\n")
                continue
            stream.write(json.dumps(message.export_record()) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="count the messages by reason; move nothing")
    parser.add_argument("--export", type=Path, help="with --dry-run: write the messages to this JSON Lines file")
    parser.add_argument("--stage", default="dev", help="Chalice stage whose dead-letter queue to redrive (default dev)")
    args = parser.parse_args(argv)
    if args.export and not args.dry_run:
        parser.error("--export goes with --dry-run")

    def command() -> int:
        environment = operator_environment(args.stage)
        queue = DeadLetterQueue(environment)
        if args.dry_run:
            print(f"dead-letter queue {queue.name} ({where()}), dry run: nothing is moved")
            inspection = inspect(queue)
            print("\n".join(inspection.lines()))
            if args.export:
                export(inspection.messages, args.export)
                print(f"exported to {args.export} (send it again with `make replay FILE={args.export}`)")
            return 0
        producer = FeaturesProducer(environment)
        print(f"redriving {queue.name} to {producer.name} ({where()})")
        report = redrive(queue, producer, Progress("redriving", queue.approximate_depth() or None, sys.stderr))
        print("\n".join(report.lines()))
        return 1 if report.left_behind else 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
