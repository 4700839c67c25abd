"""Slow tier: bake the combinations that behave most differently and run each project's whole suite.

Each run is the generated project's own `make test-all`: lint, the fast tier, and the
local-pipeline, trigger, fault and soak tests. The fast tier already bakes, lints and checks every
row of test_bake.COMBINATIONS; a full suite costs about 100 CPU-seconds, so this tier runs the
four whose behaviour differs most, chosen by what each adds:

- the default project (standard SQS to SQS) with a second model swapped in, under a CPU hog, so
  no test may need an idle machine (tests/test_model_swap.py);
- FIFO to a table with an open read API: a held-back group meets "newest event wins";
- FIFO to a topic, with per-record calls, JSON Lines, X-Ray and python3.13: the handler's other
  code paths, and the other runtime in the packaged template;
- Kinesis to a stream: retries from a sequence number republish the rest of a batch, and the
  on-failure destination gets pointers, not records.

Together they run every source and every destination. Two more shapes run their fast tier
(`make test`: handler, packaging, IAM and deploy contracts), for what only they have: the longest
names the answers allow (every generated name must stay within AWS's limits) and every number at
its maximum with a serverless endpoint. Left out, for the time they would cost: FIFO to a FIFO
queue or to a stream, and Kinesis to a table; their own suites differ from the rows kept in the
expected duplicate counts of a few fault tests, which `make test-all` in a project of that shape
runs.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from baking import bake_into
from suite_runner import SuiteRun, run_suite
from test_bake import COMBINATIONS, combination_id

# A generated suite that hangs must fail this tier, not stall it; the failure names the tests
# still running. Generous: a suite takes one to two minutes on a loaded 2-core machine.
SUITE_TIMEOUT_SECONDS = 600
# pytest processes inside each suite: the template already runs several suites at once, and one
# worker collects the suite and starts its emulators once instead of twice.
SUITE_WORKERS = 1

SUITE_COMBINATIONS = [
    {"input_source": "sqs-fifo", "output_destination": "dynamodb", "read_api_auth": "none"},
    {
        "input_source": "sqs-fifo",
        "output_destination": "sns",
        "endpoint_call_mode": "per-record",
        "endpoint_content_type": "application/jsonlines",
        "xray_tracing": "active",
        "lambda_runtime": "python3.13",
    },
    {"input_source": "kinesis", "output_destination": "kinesis", "features_source_name": "clicks.v2"},
]

# Fast tier only: what these add is in their names and numbers, not in the pipeline's behaviour.
FAST_TIER_COMBINATIONS = [combination for combination in COMBINATIONS if "project_slug" in combination] + [
    combination for combination in COMBINATIONS if combination.get("endpoint_kind") == "serverless"
]
assert len(FAST_TIER_COMBINATIONS) == 2, "test_bake.COMBINATIONS lost its long-names or its maximums row"

# Every source and every destination runs its suite: the default project (SQS to SQS) runs
# below, under load.
assert {row.get("input_source") for row in SUITE_COMBINATIONS} | {"sqs"} == {
    "sqs",
    "sqs-fifo",
    "kinesis",
}
assert {row.get("output_destination", "sqs") for row in SUITE_COMBINATIONS} | {"sqs"} == {
    "sqs",
    "sns",
    "kinesis",
    "dynamodb",
}


def baked_project(tmp_path: Path, answers: dict[str, str]) -> Path:
    """Bake the answers into tmp_path and return the project folder."""
    result = bake_into(tmp_path, answers)
    assert result.succeeded, result.error
    assert result.project_dir is not None
    return result.project_dir


def run_make(project_dir: Path, target: str) -> SuiteRun:
    """Run the project's `make <target>` on the template's environment, which holds its lock."""
    venv = Path(sys.prefix)
    # -o: the shared environment is up to date; never rebuild it from the project's lock.
    command = ["make", target, f"VENV={venv}", f"TEST_WORKERS={SUITE_WORKERS}", "-o", f"{venv}/.installed"]
    return run_suite(command, project_dir, SUITE_TIMEOUT_SECONDS)


@pytest.mark.slow
@pytest.mark.parametrize("answers", SUITE_COMBINATIONS, ids=combination_id)
def test_each_baked_project_passes_its_own_tests(answers: dict[str, str], tmp_path: Path) -> None:
    """Every combination that behaves differently generates a project whose own suite passes."""
    suite = run_make(baked_project(tmp_path, answers), "test-all")
    assert suite.passed, suite.report()


@pytest.mark.slow
@pytest.mark.parametrize("answers", FAST_TIER_COMBINATIONS, ids=combination_id)
def test_the_longest_names_and_the_largest_numbers_pass_the_fast_tier(
    answers: dict[str, str], tmp_path: Path
) -> None:
    """Names and numbers at their limits still make a project whose contracts hold."""
    suite = run_make(baked_project(tmp_path, answers), "test")
    assert suite.passed, suite.report()


def test_a_suite_past_its_limit_is_stopped_and_names_the_test_still_running(tmp_path: Path) -> None:
    """A hung suite must fail with the test it hung in, not with a bare timeout."""
    (tmp_path / "test_suite.py").write_text(
        textwrap.dedent(
            """
            import threading

            def test_finishes():
                pass

            def test_hangs():
                threading.Event().wait()
            """
        ),
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "test_suite.py"]
    suite = run_suite(command, tmp_path, timeout_seconds=10)

    assert suite.returncode is None
    assert suite.running == ["test_suite.py::test_hangs"]
    assert "tests still running:\n  test_suite.py::test_hangs" in suite.report()
