"""Slow tier: a team brings its own model, touching only the model contract's files, and it all works.

The second model differs from the example in every way the contract allows: other input fields
(a fraud scorer's `account_id`, `amount`, `hour`), another output shape (`fraud_probability`), a
third-party package in `model/code/requirements.txt` (joblib, which the dev environment does not
have) and another artifact format (`model.joblib`). The test writes exactly the files the
generated README's "Replacing the model" section lists, then runs `make local`, `make soak` and
`make test-all` as the team would, with a CPU hog beside them all: this is also the slow tier's
run of the default project's whole suite, and no test may need an idle machine. The artifact is
written with the model's own environment (built by `make model-env`), as a team's training job
would, since the dev environment has no joblib.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_generated_suites import SUITE_TIMEOUT_SECONDS, SUITE_WORKERS, baked_project

from suite_runner import cpu_hog, run_suite

# The files a team touches to bring its model, in the README's order; nothing else may change.
CONTRACT_FILES = (
    "model/code/inference.py",
    "model/code/input.schema.json",
    "model/code/requirements.txt",
    "model/samples.jsonl",
    "model/cooccurrence.json",
    "model/model.joblib",
    "tests/test_model.py",
)
# What run_suite writes into the folder it runs in: the suite's output and progress files.
RUN_FILES = re.compile(r"^\.suite-")
# Where the example's inference.py begins its generic SageMaker part, which a team keeps as it is.
SAGEMAKER_PART = "# The SageMaker contract"

FRAUD_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Card payment",
    "description": "One payment to score: the account, the amount in euros and the local hour.",
    "type": "object",
    "required": ["account_id", "amount", "hour"],
    "additionalProperties": False,
    "properties": {
        "account_id": {"type": "string", "pattern": "^acct-[0-9]{6}$"},
        "amount": {"type": "number", "minimum": 0, "maximum": 100000},
        "hour": {"type": "integer", "minimum": 0, "maximum": 23},
    },
}

# The team's part of the fraud scorer's inference.py; the generic SageMaker part follows it unchanged.
FRAUD_MODEL = '''\
"""SageMaker inference entry points for a fraud scorer: a logistic model over amount and hour."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import fastjsonschema
import joblib


def load_model(model_dir: Path) -> dict:
    """The weights `model.joblib` holds."""
    return joblib.load(model_dir / "model.joblib")


def predict(record: dict, model: dict) -> dict:
    """The probability that the payment is fraudulent."""
    night = 1.0 if record["hour"] < 6 else 0.0
    score = model["bias"] + model["amount"] * math.log1p(record["amount"]) + model["night"] * night
    return {"fraud_probability": round(1 / (1 + math.exp(-score)), 6)}


'''

FRAUD_MODEL_TEST = '''\
"""The fraud scorer: runs in the model's own environment (joblib is not in the dev venv)."""

import importlib.util
import sys
from pathlib import Path

import pytest

CODE = Path(__file__).resolve().parents[1] / "model" / "code" / "inference.py"


@pytest.fixture(scope="module")
def inference():
    spec = importlib.util.spec_from_file_location("fraud_inference", CODE)
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module runs.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_a_large_night_payment_scores_higher_than_a_small_day_one(inference):
    model = inference.load_model(CODE.parents[1])
    night = inference.predict({"account_id": "acct-000001", "amount": 5000.0, "hour": 3}, model)
    day = inference.predict({"account_id": "acct-000001", "amount": 12.5, "hour": 14}, model)
    assert 0 < day["fraud_probability"] < night["fraud_probability"] < 1


def test_a_payment_without_an_hour_is_refused_with_the_field(inference):
    with pytest.raises(ValueError, match="hour"):
        inference.input_fn('{"account_id": "acct-000001", "amount": 3}', "application/json")
'''


def fraud_samples(count: int) -> str:
    """Write `count` seeded payments as JSON Lines, the fraud scorer's model/samples.jsonl."""
    rng = random.Random(5)
    lines = []
    for _ in range(count):
        account = f"acct-{rng.randrange(10**6):06d}"
        lines.append(
            {"account_id": account, "amount": round(rng.uniform(1, 3000), 2), "hour": rng.randrange(24)}
        )
    return "".join(json.dumps(line) + "\n" for line in lines)


def swap_in_the_fraud_model(project: Path) -> None:
    """Write the contract's files for the fraud scorer; the artifact comes later, from its own env."""
    example = (project / "model" / "code" / "inference.py").read_text(encoding="utf-8")
    assert SAGEMAKER_PART in example, "the example inference.py lost its generic SageMaker part"
    # From the rule above the marker: the generic part, kept exactly as the template wrote it.
    generic = example[example.rindex("\n# ---", 0, example.index(SAGEMAKER_PART)) + 1 :]
    (project / "model" / "code" / "inference.py").write_text(FRAUD_MODEL + generic)
    (project / "model" / "code" / "input.schema.json").write_text(json.dumps(FRAUD_SCHEMA, indent=2) + "\n")
    requirements = (project / "model" / "code" / "requirements.txt").read_text(encoding="utf-8")
    (project / "model" / "code" / "requirements.txt").write_text(requirements + "joblib==1.4.2\n")
    (project / "model" / "samples.jsonl").write_text(fraud_samples(60))
    (project / "tests" / "test_model.py").write_text(FRAUD_MODEL_TEST)
    # The example's artifact goes; nothing may bring it back (as `make train` would have).
    (project / "model" / "cooccurrence.json").unlink()


def make(project: Path, *arguments: str) -> str:
    """Run make in the project on the template's environment; return its output, failing on error."""
    venv = Path(sys.prefix)
    settings = [f"VENV={venv}", f"TEST_WORKERS={SUITE_WORKERS}", "-o", f"{venv}/.installed"]
    run = run_suite(["make", *arguments, *settings], project, SUITE_TIMEOUT_SECONDS)
    assert run.passed, run.report()
    return run.output


def commit_everything(project: Path) -> None:
    """Make the project a git repository with one commit, as a team keeps it."""
    for command in (
        ["init", "--quiet"],
        ["add", "--all"],
        ["commit", "--quiet", "--no-verify", "-m", "Generated"],
    ):
        subprocess.run(
            ["git", "-c", "user.name=Team", "-c", "user.email=team@example.com", *command],
            cwd=project,
            check=True,
        )


def changed_files(project: Path) -> set[str]:
    """Every file git sees changed, added or deleted since that commit (what the team would commit)."""
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all", "-z"],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {entry[3:] for entry in status.split("\0") if entry}


def summary_value(output: str, name: str) -> int:
    """Read a count from a summary table line such as `lost           0`."""
    found = re.findall(rf"^\s*{re.escape(name)}\s+(\d+)", output, flags=re.MULTILINE)
    assert found, f"no {name!r} line in:\n{output[-3000:]}"
    return int(found[-1])


@pytest.mark.slow
def test_a_second_model_of_another_kind_runs_locally_soaks_and_passes_every_test_beside_a_cpu_hog(
    tmp_path: Path,
) -> None:
    """Only the contract's files change, and local mode, soak and every test work on the new model."""
    project = baked_project(tmp_path, {})
    commit_everything(project)
    swap_in_the_fraud_model(project)

    model_python = make(project, "--no-print-directory", "-s", "model-env").strip().splitlines()[-1]
    weights = "import joblib; joblib.dump({'bias': -6.0, 'amount': 0.6, 'night': 1.5}, 'model/model.joblib')"
    subprocess.run([model_python, "-c", weights], cwd=project, check=True)

    with cpu_hog() as hog:
        # Every event a well-formed sample: each one must come out predicted.
        local = make(project, "local", "COUNT=100", "MALFORMED_RATE=0")
        soak = make(project, "soak", "COUNT=300")
        make(project, "test-all")
    assert [summary_value(local, name) for name in ("sent", "predicted", "dead-lettered", "lost")] == [
        100,
        100,
        0,
        0,
    ]
    assert summary_value(soak, "lost") == 0, soak[-3000:]
    # The hog really ran: it spun for most of the runs (at least a few seconds of CPU).
    assert hog.cpu_seconds > 5

    # Environments, caches, logs and packaging are ignored by the project's own .gitignore.
    assert {name for name in changed_files(project) if not RUN_FILES.search(name)} == set(CONTRACT_FILES)
    assert not (project / "model" / "cooccurrence.json").exists()

    # The model's package is in its own environment, never in the dev one.
    assert importlib.util.find_spec("joblib") is None
    probe = subprocess.run([model_python, "-c", "import joblib"], capture_output=True, check=False)
    assert probe.returncode == 0, probe.stderr
