"""GitHub Actions: the template's own workflow and the one every generated project gets.

Both must be valid YAML, pin every action to a full commit SHA (a moved tag cannot change what
runs), declare read-only permissions and a timeout. The generated one must run the project's own
`make lint` and `make test` on the Lambda runtime's Python.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from baking import TEMPLATE_DIR, bake_into

TEMPLATE_WORKFLOW = TEMPLATE_DIR / ".github" / "workflows" / "ci.yml"
PROJECT_WORKFLOW = Path(".github") / "workflows" / "ci.yml"
# owner/name[/path]@<40 hex> # v<version>: the comment tells the next person which release it is.
PINNED_USES = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
PIN_COMMENT = re.compile(r"uses:\s*(\S+)\s+#\s*v\d+(\.\d+)*\s*$")


def load_workflow(path: Path) -> dict[Any, Any]:
    """Parse a workflow file; YAML 1.1 reads the `on` key as True, so name it back."""
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(workflow, dict), f"{path} is not a YAML mapping"
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps(workflow: dict[Any, Any]) -> Iterator[dict[str, Any]]:
    """Yield every step of every job."""
    for job in workflow["jobs"].values():
        yield from job.get("steps", [])


def assert_actions_are_pinned(path: Path, workflow: dict[Any, Any]) -> None:
    """Every `uses:` names a 40-hex commit, with the release it is in a `# vX.Y.Z` comment."""
    used = [step["uses"] for step in steps(workflow) if "uses" in step]
    assert used, f"{path} uses no action; the check below would prove nothing"
    assert [action for action in used if not PINNED_USES.match(action)] == []
    commented = {
        match.group(1)
        for line in path.read_text(encoding="utf-8").splitlines()
        if (match := PIN_COMMENT.search(line))
    }
    assert sorted(set(used) - commented) == [], "add the release as a comment: `uses: a/b@<sha> # v1.2.3`"


def assert_permissions_are_read_only(workflow: dict[Any, Any]) -> None:
    """Permissions are declared at the top and nowhere grant write (or write-all)."""
    assert "permissions" in workflow, "declare permissions, or the repository default (maybe write) applies"
    scopes = [workflow["permissions"]] + [
        job["permissions"] for job in workflow["jobs"].values() if "permissions" in job
    ]
    for scope in scopes:
        if isinstance(scope, str):
            assert scope in {"read-all", "{}"}, scope
        else:
            assert {name: level for name, level in scope.items() if level not in {"read", "none"}} == {}


def assert_every_job_has_a_timeout(workflow: dict[Any, Any]) -> None:
    """Check every job has a timeout: a hung job must not run for GitHub's default six hours."""
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("timeout-minutes"), int), f"job {name} has no timeout-minutes"


def run_commands(workflow: dict[Any, Any]) -> list[str]:
    """List the `run:` commands of every step, in order."""
    return [step["run"].strip() for step in steps(workflow) if "run" in step]


def action_pins(workflow: dict[Any, Any]) -> dict[str, str]:
    """Map each action (owner/name) to the commit it is pinned to."""
    return dict(step["uses"].split("@", 1) for step in steps(workflow) if "uses" in step)


@pytest.fixture(scope="module")
def template_workflow() -> dict[Any, Any]:
    """Parse the template repository's own CI workflow once."""
    return load_workflow(TEMPLATE_WORKFLOW)


@pytest.fixture(scope="module", params=["python3.12", "python3.13"])
def baked_workflow(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Bake a project for each Lambda runtime once; return its runtime, folder and parsed workflow."""
    result = bake_into(tmp_path_factory.mktemp("workflow"), {"lambda_runtime": request.param})
    assert result.succeeded, result.error
    assert result.project_dir is not None
    return {
        "runtime": request.param,
        "project": result.project_dir,
        "path": result.project_dir / PROJECT_WORKFLOW,
        "workflow": load_workflow(result.project_dir / PROJECT_WORKFLOW),
    }


def test_the_template_workflow_pins_its_actions_and_only_reads(template_workflow: dict[Any, Any]) -> None:
    """The template's CI is held to the rules it hands every project."""
    assert_actions_are_pinned(TEMPLATE_WORKFLOW, template_workflow)
    assert_permissions_are_read_only(template_workflow)
    assert_every_job_has_a_timeout(template_workflow)


def test_the_template_workflow_runs_the_ci_entry_point(template_workflow: dict[Any, Any]) -> None:
    """CI runs `.ci/run` (the README's `make test`) on pushes and pull requests."""
    assert {"push", "pull_request"} <= set(template_workflow["on"])
    assert run_commands(template_workflow) == [".ci/run"]


def test_a_newer_push_cancels_the_template_run_it_supersedes(template_workflow: dict[Any, Any]) -> None:
    """The full suite takes minutes; a superseded run should not hold a runner."""
    concurrency = template_workflow["concurrency"]
    assert concurrency["cancel-in-progress"] is True
    assert "github.ref" in concurrency["group"]


def test_the_generated_workflow_pins_its_actions_and_only_reads(baked_workflow: dict[str, Any]) -> None:
    """What a team starts with is already hardened."""
    assert_actions_are_pinned(baked_workflow["path"], baked_workflow["workflow"])
    assert_permissions_are_read_only(baked_workflow["workflow"])
    assert_every_job_has_a_timeout(baked_workflow["workflow"])


def test_the_generated_workflow_runs_the_projects_lint_and_tests(baked_workflow: dict[str, Any]) -> None:
    """CI runs the same targets a developer runs, and the Makefile has them."""
    workflow = baked_workflow["workflow"]
    assert {"push", "pull_request"} <= set(workflow["on"])
    commands = run_commands(workflow)
    assert "make lint" in commands
    # Both tiers: `make test` alone would leave the fault and soak tests out of CI.
    assert "make test-all" in commands
    makefile = (baked_workflow["project"] / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^lint:", makefile, flags=re.MULTILINE)
    assert re.search(r"^test-all:", makefile, flags=re.MULTILINE)


def test_the_generated_workflow_uses_the_lambda_runtimes_python(baked_workflow: dict[str, Any]) -> None:
    """Tests run on the Python the function will run on in Lambda."""
    (setup,) = [
        step
        for step in steps(baked_workflow["workflow"])
        if step.get("uses", "").startswith("actions/setup-python@")
    ]
    assert setup["with"]["python-version"] == baked_workflow["runtime"].removeprefix("python")


def test_both_workflows_pin_the_same_action_commits(
    template_workflow: dict[Any, Any], baked_workflow: dict[str, Any]
) -> None:
    """One version of each action to review and bump, in the template and in what it generates."""
    template_pins = action_pins(template_workflow)
    project_pins = action_pins(baked_workflow["workflow"])
    shared = set(template_pins) & set(project_pins)
    assert shared, "the two workflows share no action"
    assert {action: template_pins[action] for action in shared} == {
        action: project_pins[action] for action in shared
    }
