# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make tail`: follows the predictions in the terminal, one line per envelope, until Ctrl-C.

    python -m template_tools.tail --stage dev [--limit 20]

Each line: prediction time, message id, model version, and the prediction cut to fit one line.
{%- if cookiecutter.output_destination == "sqs" %}

The predictions queue has one reader: tail TAKES THE PREDICTIONS IT SHOWS OFF THE QUEUE (it
receives and deletes them), so the consumer never gets them. Against AWS it refuses to start
unless given --consume (`make tail CONSUME=1`): tail a dev stage, or one no consumer reads yet;
never a queue a team depends on. Against the emulator (LOCAL=1) it needs no flag.
{%- elif cookiecutter.output_destination == "sns" %}

Tail reads its own queue, <topic>-tail, subscribed to the topic (it creates and subscribes it on
first use), so the topic's subscribers still get every prediction. The queue keeps collecting
predictions between tails (SQS keeps them 4 days): the first lines may be old ones. Delete the
queue when nobody tails any more.
{%- elif cookiecutter.output_destination == "kinesis" %}

Tail reads every shard from its latest record on, like any other stream reader: the consumers
still get every prediction.
{%- else %}

Tail follows the table's stream (NEW_IMAGE) from its latest record on: it shows each stored
prediction, not those a newer prediction of the same key superseded. It reads only.
{%- endif %}
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

{% if cookiecutter.output_destination == "sns" -%}
from .destination import PredictionReader, create_destination
{%- else -%}
from .destination import PredictionReader
{%- endif %}
{% if cookiecutter.output_destination == "sqs" -%}
from .operator_stage import on_emulator, operator_environment, run_command, where
{%- else -%}
from .operator_stage import operator_environment, run_command, where
{%- endif %}

# The prediction is cut to this many characters so each envelope stays on one line.
SUMMARY_CHARS = 100
# How long one read waits for predictions before asking again.
READ_WAIT_SECONDS = 5


def envelope_line(envelope: Any) -> str:
    """One envelope as one line: when, which message, which model, what it predicted."""
    if not isinstance(envelope, dict):
        return _cut(f"(not an envelope) {json.dumps(envelope)}")
    summary = json.dumps(envelope.get("prediction"), separators=(",", ":"), ensure_ascii=False)
    return " ".join(
        [
            str(envelope.get("prediction_time") or "-"),
            str(envelope.get("message_id") or "-"),
            f"model={envelope.get('model_version') or '-'}",
            _cut(summary),
        ]
    )


def _cut(text: str) -> str:
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 3] + "..."


def follow(reader: PredictionReader, out: TextIO, limit: int | None, wait_seconds: float = READ_WAIT_SECONDS) -> int:
    """Print each envelope the reader returns until at least `limit` are printed (None: until interrupted).

    Every envelope of the last read is printed, even past `limit`: reading may have taken it off
    a queue, and one not printed would be gone unseen.
    """
    printed = 0
    while limit is None or printed < limit:
        for envelope in reader.read(wait_seconds):
            print(envelope_line(envelope), file=out, flush=True)
            printed += 1
    return printed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="dev", help="Chalice stage whose predictions to follow (default dev)")
    parser.add_argument(
        "--limit", type=int, help="stop once this many predictions are shown (default: run until Ctrl-C)"
    )
{%- if cookiecutter.output_destination == "sqs" %}
    parser.add_argument(
        "--consume",
        action="store_true",
        help="take the predictions shown off the queue (needed against AWS: the consumer never gets them)",
    )
{%- endif %}
    args = parser.parse_args(argv)
{%- if cookiecutter.output_destination == "sqs" %}
    if not args.consume and not on_emulator():
        print(
            "error: tail takes the predictions it shows off the queue, so its consumer never gets them; "
            "on a queue no consumer reads (a dev stage), run `make tail CONSUME=1`",
            file=sys.stderr,
        )
        return 2
{%- endif %}

    def command() -> int:
        environment = operator_environment(args.stage)
{%- if cookiecutter.output_destination == "sns" %}
        # Creates the tail queue and its subscription if they are missing; the topic exists already.
        create_destination(environment)
{%- endif %}
        reader = PredictionReader(environment)
        print(f"following predictions ({where()}); Ctrl-C to stop", file=sys.stderr)
        follow(reader, sys.stdout, args.limit)
        return 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
