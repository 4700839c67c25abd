# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make tail`: follows the predictions in the terminal, one line per envelope, until Ctrl-C.

    python -m template_tools.tail --stage dev [--limit 20]

Each line: prediction time, message id, model version, and the prediction cut to fit one line.

What tail does to the predictions it shows (whether it takes them away from the consumers, where
it reads from) depends on the destination: its --help says, from destination.py's TAIL_NOTE.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from .destination import TAIL_NOTE, PredictionReader, add_tail_options, prepare_tail, tail_refusal
from .operator_stage import operator_environment, run_command, where

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
    parser = argparse.ArgumentParser(
        description=f"{__doc__}\n{TAIL_NOTE}", formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stage", default="dev", help="Chalice stage whose predictions to follow (default dev)")
    parser.add_argument(
        "--limit", type=int, help="stop once this many predictions are shown (default: run until Ctrl-C)"
    )
    add_tail_options(parser)
    args = parser.parse_args(argv)
    refusal = tail_refusal(args)
    if refusal is not None:
        print(f"error: {refusal}", file=sys.stderr)
        return 2

    def command() -> int:
        environment = operator_environment(args.stage)
        prepare_tail(environment)
        reader = PredictionReader(environment)
        print(f"following predictions ({where()}); Ctrl-C to stop", file=sys.stderr)
        follow(reader, sys.stdout, args.limit)
        return 0

    return run_command(command)


if __name__ == "__main__":
    sys.exit(main())
