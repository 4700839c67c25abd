# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Write the deployable CloudFormation template and code zip to package/, without calling AWS.

    python -m template_tools.deploy.package --stage dev      # package/sam.json, package/deployment.zip

Copies the model input schema where Chalice packages it, runs `chalice package` with this
stage's merge template (merge_template.py), then checks the result (template_checks.py), so a
template without ReportBatchItemFailures, or with a "*" resource, is never deployed; and the
template as SAM expands it, with cfn-lint, so an event source CloudFormation would refuse is
caught here rather than halfway through a stack update.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from template_tools.stage import PROJECT_DIR

from .cli import DeployError, run
from .configuration import load_settings
from .merge_template import merge_template
from .settings import DeploySettings
from .template_checks import expanded_template_problems, template_problems

PACKAGE_DIR = PROJECT_DIR / "package"
TEMPLATE_FILE = "sam.json"
MERGE_TEMPLATE_FILE = "merge-template.json"
# The model input's one description, read by the handler at the same relative path in the
# function's code root as in the project. Chalice puts everything under vendor/ at the top of
# the code zip, so a copy there reaches Lambda; vendor/ is generated and not committed.
MODEL_INPUT_SCHEMA = Path("model", "code", "input.schema.json")
VENDOR_DIR = "vendor"


class PackagingError(DeployError):
    """`chalice package` failed or produced a template that must not be deployed."""


def chalice_command() -> list[str]:
    """Chalice from the Python running this script (the project's venv), not whatever is on PATH."""
    return [sys.executable, "-c", "import sys; from chalice.cli import main; sys.exit(main())"]


def vendor_model_input_schema(project_dir: Path, code_dir: Path | None = None) -> Path:
    """Copy model/code/input.schema.json into `code_dir`/vendor/, where Chalice packages it; return the copy."""
    target = (code_dir or project_dir) / VENDOR_DIR / MODEL_INPUT_SCHEMA
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed into place, so a packaging run beside this one never zips half a file.
    partial = target.with_name(f".{target.name}.{os.getpid()}")
    shutil.copyfile(project_dir / MODEL_INPUT_SCHEMA, partial)
    partial.replace(target)
    return target


def package(settings: DeploySettings, out_dir: Path = PACKAGE_DIR, project_dir: Path = PROJECT_DIR) -> Path:
    """Package the stage into out_dir; return the template's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    vendor_model_input_schema(project_dir)
    merge_file = out_dir / MERGE_TEMPLATE_FILE
    merge_file.write_text(json.dumps(merge_template(settings), indent=2) + "\n", encoding="utf-8")
    # Chalice looks the region up even though packaging makes no AWS call.
    env = {**os.environ, "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or settings.region}
    command = [
        *chalice_command(),
        "package",
        "--stage",
        settings.stage,
        "--merge-template",
        str(merge_file),
        str(out_dir),
    ]
    started = time.monotonic()
    result = subprocess.run(command, cwd=project_dir, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise PackagingError(f"chalice package failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    template_path = out_dir / TEMPLATE_FILE
    template = json.loads(template_path.read_text(encoding="utf-8"))
    problems = template_problems(template, settings) or expanded_template_problems(template, settings.region)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise PackagingError(f"{template_path} must not be deployed:\n{listed}")
    print(
        f"Packaged stage {settings.stage} into {out_dir} in {time.monotonic() - started:.1f} s "
        f"({TEMPLATE_FILE}, deployment.zip; runtime {settings.lambda_runtime}; checked as SAM expands it)"
    )
    return template_path


def main(argv: list[str] | None = None) -> int:
    """Package one stage."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--out", type=Path, default=PACKAGE_DIR, help="output folder (default: package/)")
    args = parser.parse_args(argv)
    package(load_settings(args.stage), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
