"""Fit the freshly generated project to the chosen options, then say what to do next.

Cookiecutter runs this hook inside the new project folder. Each option that leaves files behind
which the chosen value does not use gets one small `remove_<feature>_files()` helper here, called
from `fit_project_to_options()`, so an option's whole file footprint is visible in one place.
No option has such a footprint yet: every option today only changes values inside files.

Adding one (say, a `predictions_sink` option whose `sns` choice brings `infra/sns_topic.json`):

    def remove_sns_sink_files() -> None:
        # docstring: "Drop the SNS topic definition: predictions go to the SQS queue."
        Path("infra", "sns_topic.json").unlink()

and in `fit_project_to_options()`: `if ANSWERS["predictions_sink"] != "sns": remove_sns_sink_files()`.
Remove folders here too rather than with a conditional folder name, which cookiecutter would leave
behind half-made.

The hook does not run `git init`: where the project lives and how it is versioned (a new repo,
a monorepo folder, `cruft create`) is the team's choice.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# The answers are read as data: an answer is never pasted into Python source.
ANSWERS: dict[str, object] = json.loads(
    r"""
{{ cookiecutter | tojson }}
""".strip()
)


def fit_project_to_options() -> None:
    """Remove the files that the chosen options do not use (none today; see the module docstring)."""


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
            "Bring your own model: replace model/code/inference.py (model_fn, input_fn, predict_fn,",
            f"output_fn) and the artifacts under model/; {package}/train.py builds the example one.",
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
