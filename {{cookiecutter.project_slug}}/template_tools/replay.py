# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make replay`: re-publishes a file of events through the pipeline, by sending it to the features source.

    python -m template_tools.replay events.jsonl --stage dev

The file is JSON Lines: event bodies, or the dead-letter export `make redrive DRY_RUN=1
EXPORT=file` writes (a {"body", "attributes", ...} object per line), whose bodies are sent byte
for byte, each in the group it had where the source keeps groups (a FIFO queue's message group).
Every line is sent, even one that is not JSON (see send.py). An export's records are sent as the
same events: each carries the event id and time of its first delivery (its "event_id" and
"event_time"), so consumers can drop a copy of a prediction already published and a newest-wins
destination keeps a newer prediction. A line that is a body alone has no first delivery to keep:
an envelope keeps its own event_id and event_time, a bare model input becomes a new event.

Each replay gets deduplication ids of its own, so a source that drops repeats (a FIFO queue, for
5 minutes) does not drop an event sent earlier; replaying a file twice therefore sends it twice.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from .features_producer import FeaturesProducer
from .operator_stage import operator_environment, run_command, where
from .send import EventFileError, FileLine, send_file


def replay_deduplication_id(run_id: str) -> Callable[[FileLine], str]:
    """Deduplication ids of one replay run: the run and the line, so a line is taken once per run."""
    return lambda line: f"replay-{run_id}-{line.number}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="JSON Lines file: event bodies, or a dead-letter export")
    parser.add_argument("--stage", default="dev", help="Chalice stage whose source to send to (default dev)")
    args = parser.parse_args(argv)

    def command() -> int:
        producer = FeaturesProducer(operator_environment(args.stage))
        print(f"replaying {args.file} to {producer.name} ({where()})")
        report = send_file(args.file, producer, replay_deduplication_id(uuid.uuid4().hex[:12]))
        print("\n".join(report.lines()))
        return 1 if report.refused else 0

    try:
        return run_command(command)
    except EventFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
