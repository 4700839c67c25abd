"""Fit the freshly generated project to the chosen options, then say what to do next.

Cookiecutter runs this hook inside the new project folder. Two kinds of option footprint:

- Variant folders. Where each choice of an option needs its own version of one module (the
  prediction destination, the event source), the template holds one file per choice in a folder,
  for example `chalicelib/template_runtime/destinations/sns.py`; the chosen file is moved to the
  module's real path (`chalicelib/template_runtime/destination.py`) and the folder is deleted.
  VARIANT_FOLDERS lists them all, so an option's whole footprint is visible in one place, and
  the generated code holds only the chosen variant, with no branches for the others.
- Files only some choices use (the DynamoDB read API, the Kinesis trigger emulator, what the
  queue sources share): one small
  `remove_<feature>_files()` helper each, called from `fit_project_to_options()`.

Remove folders here rather than with a conditional folder name, which cookiecutter would leave
behind half-made.

The hook does not run `git init`: where the project lives and how it is versioned (a new repo,
a monorepo folder, `cruft create`) is the team's choice.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

# The answers are read as data: an answer is never pasted into Python source.
ANSWERS: dict[str, object] = json.loads(
    r"""
{{ cookiecutter | tojson }}
""".strip()
)


# (folder of variants, option that picks one, where the chosen variant goes). A variant file is
# named after the choice, with "-" as "_" (sqs-fifo -> sqs_fifo.py); a folder may lack a file for
# a choice that needs nothing there.
VARIANT_FOLDERS: tuple[tuple[str, str, str], ...] = (
    (
        "chalicelib/template_runtime/destinations",
        "output_destination",
        "chalicelib/template_runtime/destination.py",
    ),
    ("chalicelib/template_runtime/sources", "input_source", "chalicelib/template_runtime/source.py"),
    ("template_tools/deploy/destinations", "output_destination", "template_tools/deploy/destination.py"),
    ("template_tools/deploy/sources", "input_source", "template_tools/deploy/source.py"),
    ("template_tools/tests/destinations", "output_destination", "template_tools/tests/test_destination.py"),
    ("template_tools/tests/sources", "input_source", "template_tools/tests/test_source.py"),
    ("template_tools/destinations", "output_destination", "template_tools/destination.py"),
    ("template_tools/sources", "input_source", "template_tools/source.py"),
)


def keep_chosen_variant(folder: str, option: str, target: str) -> None:
    """Move the variant the answer chose to `target`, then delete the folder of variants."""
    variants = Path(folder)
    if not variants.is_dir():
        return
    chosen = variants / f"{str(ANSWERS[option]).replace('-', '_')}.py"
    if chosen.exists():
        chosen.replace(target)
    shutil.rmtree(variants)


def remove_read_api_files() -> None:
    """Drop the DynamoDB read API: predictions go to a queue, topic or stream, not a table."""
    for path in (
        "chalicelib/template_runtime/predictions_api.py",
        "schemas/predictions-api.openapi.json",
        "template_tools/tests/test_predictions_api.py",
    ):
        Path(path).unlink(missing_ok=True)


def remove_kinesis_trigger_files() -> None:
    """Drop the local Kinesis trigger: feature events arrive on an SQS queue."""
    for path in ("template_tools/kinesis_trigger.py", "template_tools/tests/test_kinesis_trigger.py"):
        Path(path).unlink(missing_ok=True)


def remove_queue_source_files() -> None:
    """Drop what the SQS standard and FIFO sources share: feature events arrive on a stream."""
    for path in ("template_tools/queue_source.py", "template_tools/deploy/queue_source.py"):
        Path(path).unlink(missing_ok=True)


def remove_queue_consumer_example() -> None:
    """Drop the example queue consumer: a stream or table is read with the README's other recipes."""
    for path in ("examples/consume_predictions.py", "template_tools/tests/test_example_consumer.py"):
        Path(path).unlink(missing_ok=True)
    Path("examples").rmdir()


def remove_tracing_files() -> None:
    """Drop the X-Ray set-up: tracing is off."""
    for path in (
        "chalicelib/template_runtime/tracing.py",
        "template_tools/deploy/tracing.py",
        "template_tools/tests/test_tracing.py",
    ):
        Path(path).unlink(missing_ok=True)


def remove_group_order_files() -> None:
    """Drop the group-order tests: a standard queue promises no order to keep."""
    Path("template_tools/tests/test_group_order.py").unlink(missing_ok=True)


def fit_project_to_options() -> None:
    """Keep the chosen variants and remove the files that the chosen options do not use."""
    for folder, option, target in VARIANT_FOLDERS:
        keep_chosen_variant(folder, option, target)
    if ANSWERS["output_destination"] != "dynamodb":
        remove_read_api_files()
    if ANSWERS["input_source"] != "kinesis":
        remove_kinesis_trigger_files()
    else:
        remove_queue_source_files()
    if ANSWERS["input_source"] == "sqs":
        remove_group_order_files()
    if ANSWERS["output_destination"] not in ("sqs", "sns"):
        remove_queue_consumer_example()
    if ANSWERS["xray_tracing"] != "active":
        remove_tracing_files()


def shown_path(project_dir: Path) -> str:
    """Name the project folder as the user can `cd` to it: relative to their shell if inside it."""
    # The hook runs inside the project folder; PWD still names the folder the user started from.
    started_in = Path(os.environ.get("PWD", project_dir.parent)).resolve()
    try:
        return str(project_dir.resolve().relative_to(started_in))
    except ValueError:
        return str(project_dir.resolve())


def next_steps(answers: dict[str, object], project_dir: Path) -> str:
    """Write the short guide printed after generation: run it locally, test it, swap the model."""
    package = answers["package_name"]
    return "\n".join(
        [
            "",
            f"Generated {answers['project_name']} in {shown_path(project_dir)}. Next:",
            "",
            f"  cd {shown_path(project_dir)}",
            "  make local     # the whole pipeline on this machine: no AWS account, no Docker",
            "  make test      # the project's tests",
            "",
            "Bring your own model: load_model and predict in model/code/inference.py, then",
            "model/code/input.schema.json and requirements.txt, your artifacts and samples.jsonl in",
            'model/, and tests/test_model.py (the README\'s "Replacing the model").',
            f"{package}/train.py trains the example one.",
            "Then `make deploy-endpoint` and `make deploy` with AWS credentials for "
            f"{answers['aws_region']}.",
            "",
            "The folder is not a git repository yet: run `git init` (or add it to yours) when ready.",
            "",
        ]
    )


def main() -> int:
    """Fit the project to the options and print the next steps."""
    fit_project_to_options()
    print(next_steps(ANSWERS, Path.cwd()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
