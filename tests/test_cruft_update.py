"""Template versions: recorded in every project, and taken by an existing project with `cruft update`.

The update test builds a throwaway template repository from this checkout's files (tracked and
new, as the next commit would hold them), tags it v0.1.0, makes a small visible change tagged
v0.2.0, creates a project from v0.1.0 with cruft and updates it to v0.2.0: the path a team takes
when the template publishes a release.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from cookiecutter.main import cookiecutter

from baking import TEMPLATE_DIR, bake_into, default_answers, isolated_config

PROJECT_TEMPLATE = "{{cookiecutter.project_slug}}"
ANSWERS_FILE = ".template-answers.json"
# Appended to the generated README by the v0.2.0 commit: the change the update must bring.
TEMPLATE_CHANGE = "Added in template v0.2.0 by tests/test_cruft_update.py."
GIT_TIMEOUT_SECONDS = 60
CRUFT_TIMEOUT_SECONDS = 300


def release_headings(changelog: str) -> list[str]:
    """List the released versions in CHANGELOG.md, newest first (`## [1.2.3] - 2026-11-25`)."""
    return re.findall(r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", changelog, flags=re.MULTILINE)


def test_the_template_version_is_the_changelogs_newest_release() -> None:
    """`_template_version` is what every generated project records; it must name a real release."""
    context = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    releases = release_headings((TEMPLATE_DIR / "CHANGELOG.md").read_text(encoding="utf-8"))
    assert releases, "CHANGELOG.md lists no release as `## [x.y.z] - YYYY-MM-DD`"
    assert context.get("_template_version") == releases[0], (
        "cookiecutter.json's _template_version must equal the newest release in CHANGELOG.md"
    )


def test_a_project_records_the_template_version_and_every_answer(tmp_path: Path) -> None:
    """The answers file holds the version and the answers, never a path from the user's machine."""
    result = bake_into(tmp_path, {"model_version": "7", "aws_region": "us-west-2"})
    assert result.succeeded, result.error
    assert result.project_dir is not None
    recorded = json.loads((result.project_dir / ANSWERS_FILE).read_text(encoding="utf-8"))
    context = json.loads((TEMPLATE_DIR / "cookiecutter.json").read_text(encoding="utf-8"))
    assert recorded["template_version"] == context.get("_template_version")
    answers = default_answers({"model_version": "7", "aws_region": "us-west-2"})
    assert recorded["cookiecutter"] == {
        key: value for key, value in answers.items() if not key.startswith("_")
    }
    assert str(tmp_path) not in json.dumps(recorded)


def test_the_recorded_answers_regenerate_the_same_project(tmp_path: Path) -> None:
    """`cookiecutter --replay-file .template-answers.json <template>` rebuilds the project exactly."""
    first = bake_into(
        tmp_path / "first", {"project_name": "Churn Scores", "endpoint_call_mode": "per-record"}
    )
    assert first.succeeded, first.error
    assert first.project_dir is not None
    output_dir = tmp_path / "replayed"
    replayed = Path(
        cookiecutter(
            str(TEMPLATE_DIR),
            replay=str(first.project_dir / ANSWERS_FILE),
            output_dir=str(output_dir),
            config_file=str(isolated_config(tmp_path)),
        )
    )
    assert tree(replayed) == tree(first.project_dir)


def tree(root: Path) -> dict[str, bytes]:
    """Every file under root (outside .git) by its POSIX path, with its bytes."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def isolated_env(root: Path) -> dict[str, str]:
    """Git and cookiecutter that read no user or system config: no signing hooks, no default answers."""
    root.mkdir(parents=True, exist_ok=True)
    empty_git_config = root / "gitconfig"
    empty_git_config.write_text("", encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GIT_", "PYTEST_"))}
    env |= {
        "GIT_CONFIG_GLOBAL": str(empty_git_config),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Template Test",
        "GIT_AUTHOR_EMAIL": "template-test@example.com",
        "GIT_COMMITTER_NAME": "Template Test",
        "GIT_COMMITTER_EMAIL": "template-test@example.com",
        "COOKIECUTTER_CONFIG": str(isolated_config(root)),
    }
    return env


def git(env: Mapping[str, str], cwd: Path, *args: str) -> str:
    """Run git in cwd and return its output; a failure shows git's own message."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"git {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def cruft(env: Mapping[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the pinned cruft installed beside this Python."""
    executable = Path(sys.executable).with_name("cruft")
    if not executable.exists():
        pytest.fail(f"cruft is not installed next to {sys.executable}; install requirements-test.lock")
    return subprocess.run(
        [str(executable), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CRUFT_TIMEOUT_SECONDS,
        check=False,
    )


def template_files() -> list[str]:
    """List the checkout's files as its next commit would hold them: tracked or new, not ignored."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=TEMPLATE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=GIT_TIMEOUT_SECONDS,
        check=True,
    ).stdout
    return sorted({name for name in listed.split("\0") if name and (TEMPLATE_DIR / name).is_file()})


def copy_template(destination: Path) -> None:
    """Copy the template's files into destination, keeping their relative paths."""
    for name in template_files():
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(TEMPLATE_DIR / name, target)


def set_template_version(repo: Path, version: str) -> None:
    """Write `version` as the template's `_template_version`."""
    context_file = repo / "cookiecutter.json"
    context = json.loads(context_file.read_text(encoding="utf-8"))
    context["_template_version"] = version
    context_file.write_text(json.dumps(context, indent=2) + "\n", encoding="utf-8")


def release_two_versions(
    repo: Path, env: Mapping[str, str], changed: tuple[str, ...] = ("README.md",)
) -> dict[str, str]:
    """Release v0.1.0, then v0.2.0 with TEMPLATE_CHANGE appended to `changed`; return each tag's commit.

    `changed` names files of the generated project; a comment line is appended to non-Markdown ones.
    """
    repo.mkdir()
    git(env, repo, "init", "--quiet", "--initial-branch=main")
    copy_template(repo)
    # The two releases are the test's own, whatever version the working tree is at.
    set_template_version(repo, "0.1.0")
    git(env, repo, "add", "--all")
    git(env, repo, "commit", "--quiet", "--no-verify", "-m", "Template v0.1.0")
    git(env, repo, "tag", "v0.1.0")

    for name in changed:
        path = repo / PROJECT_TEMPLATE / name
        line = TEMPLATE_CHANGE if path.suffix == ".md" else f"# {TEMPLATE_CHANGE}"
        path.write_text(path.read_text(encoding="utf-8") + f"\n{line}\n", encoding="utf-8")
    set_template_version(repo, "0.2.0")
    git(env, repo, "commit", "--quiet", "--no-verify", "--all", "-m", "Template v0.2.0")
    git(env, repo, "tag", "v0.2.0")
    return {tag: git(env, repo, "rev-parse", f"{tag}^{{commit}}").strip() for tag in ("v0.1.0", "v0.2.0")}


def create_project_at_v0_1_0(
    tmp_path: Path, changed: tuple[str, ...] = ("README.md",)
) -> tuple[dict[str, str], dict[str, str], Path]:
    """Release v0.1.0 and v0.2.0, `cruft create` a project from v0.1.0; return env, commits, project."""
    env = isolated_env(tmp_path / "home")
    template_repo = tmp_path / "template"
    commits = release_two_versions(template_repo, env, changed)
    output_dir = tmp_path / "projects"
    created = cruft(
        env, tmp_path, "create", "--no-input", "--checkout", "v0.1.0", "--output-dir", str(output_dir),
        str(template_repo),
    )  # fmt: skip
    assert created.returncode == 0, created.stdout + created.stderr
    project = output_dir / default_answers()["project_slug"]
    return env, commits, project


def commit_all(env: Mapping[str, str], project: Path, message: str) -> None:
    """Commit the whole project: cruft update applies its patch only to a clean git work tree."""
    if not (project / ".git").exists():
        git(env, project, "init", "--quiet", "--initial-branch=main")
    git(env, project, "add", "--all")
    git(env, project, "commit", "--quiet", "--no-verify", "-m", message)


def update_to_v0_2_0(env: Mapping[str, str], project: Path) -> subprocess.CompletedProcess[str]:
    """Run the update a team runs, without its question."""
    return cruft(
        env, project, "update", "--checkout", "v0.2.0", "--skip-apply-ask", "--allow-untracked-files"
    )


def test_a_project_created_with_cruft_takes_the_next_release_with_cruft_update(tmp_path: Path) -> None:
    """Create at v0.1.0, commit, update to v0.2.0: the change arrives cleanly and check passes."""
    env, commits, project = create_project_at_v0_1_0(tmp_path)
    state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert state["commit"] == commits["v0.1.0"]
    assert TEMPLATE_CHANGE not in (project / "README.md").read_text(encoding="utf-8")
    commit_all(env, project, "Project from template v0.1.0")
    outdated = cruft(env, project, "check")
    assert outdated.returncode != 0, "cruft check must fail while a newer template commit exists"

    updated = update_to_v0_2_0(env, project)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "cruft has been updated" in updated.stdout, updated.stdout + updated.stderr
    assert (project / "README.md").read_text(encoding="utf-8").rstrip().endswith(TEMPLATE_CHANGE)
    assert sorted(path.name for path in project.rglob("*.rej")) == []
    state = json.loads((project / ".cruft.json").read_text(encoding="utf-8"))
    assert state["commit"] == commits["v0.2.0"]
    assert state["context"]["cookiecutter"]["_template_version"] == "0.2.0"
    recorded = json.loads((project / ANSWERS_FILE).read_text(encoding="utf-8"))
    assert recorded["template_version"] == "0.2.0"

    commit_all(env, project, "Update to template v0.2.0")
    checked = cruft(env, project, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # Nothing differs from a fresh v0.2.0 project with the same answers.
    diffed = cruft(env, project, "diff", "--exit-code")
    assert diffed.returncode == 0, diffed.stdout + diffed.stderr


def test_an_update_fixes_the_template_machinery_and_leaves_the_teams_files_alone(tmp_path: Path) -> None:
    """A release touching both kinds brings its change to the template's files only.

    The generated pyproject.toml tells cruft which files are the team's (`[tool.cruft] skip`).
    """
    machinery = ("template_tools/send.py", "chalicelib/template_runtime/batch.py")
    teams = ("model/code/inference.py", "app.py", "chalicelib/extension_points.py")
    env, _commits, project = create_project_at_v0_1_0(tmp_path, machinery + teams)
    commit_all(env, project, "Project from template v0.1.0")

    updated = update_to_v0_2_0(env, project)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    for name in machinery:
        assert (project / name).read_text(encoding="utf-8").rstrip().endswith(TEMPLATE_CHANGE), name
    for name in teams:
        assert TEMPLATE_CHANGE not in (project / name).read_text(encoding="utf-8"), name
    assert sorted(path.name for path in project.rglob("*.rej")) == []


def test_a_conflicting_local_edit_is_left_as_a_rej_file_for_the_team(tmp_path: Path) -> None:
    """A hunk that no longer applies is left in a .rej file; the rest of the update goes in.

    What the README's conflict advice rests on: cruft exits 0, writes README.md.rej, keeps the
    team's line, applies the other files' changes, and already names the new commit.
    """
    env, commits, project = create_project_at_v0_1_0(tmp_path)
    readme = project / "README.md"
    readme.write_text(
        readme.read_text(encoding="utf-8") + "\nOur team's own closing line.\n", encoding="utf-8"
    )
    commit_all(env, project, "Project from template v0.1.0, README edited")

    updated = update_to_v0_2_0(env, project)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    rejected = project / "README.md.rej"
    assert rejected.exists(), updated.stdout + updated.stderr
    assert TEMPLATE_CHANGE in rejected.read_text(encoding="utf-8")
    assert readme.read_text(encoding="utf-8").rstrip().endswith("Our team's own closing line.")
    assert json.loads((project / ANSWERS_FILE).read_text(encoding="utf-8"))["template_version"] == "0.2.0"
    assert json.loads((project / ".cruft.json").read_text(encoding="utf-8"))["commit"] == commits["v0.2.0"]


def test_a_project_made_with_plain_cookiecutter_joins_cruft_with_link(tmp_path: Path) -> None:
    """`cruft link` with the recorded version and answers, then `cruft update` as usual."""
    env = isolated_env(tmp_path / "home")
    template_repo = tmp_path / "template"
    commits = release_two_versions(template_repo, env)
    checkout = tmp_path / "template-v0.1.0"
    git(env, tmp_path, "clone", "--quiet", "--branch", "v0.1.0", str(template_repo), str(checkout))
    baked = subprocess.run(
        [
            sys.executable,
            "-m",
            "cookiecutter",
            "--no-input",
            "--output-dir",
            str(tmp_path / "out"),
            str(checkout),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=CRUFT_TIMEOUT_SECONDS,
        check=False,
    )
    assert baked.returncode == 0, baked.stderr
    project = tmp_path / "out" / default_answers()["project_slug"]
    commit_all(env, project, "Project from template v0.1.0 with plain cookiecutter")

    recorded = json.loads((project / ANSWERS_FILE).read_text(encoding="utf-8"))
    linked = cruft(
        env, project, "link", "--no-input", "--checkout", "v0.1.0",
        "--extra-context", json.dumps(recorded["cookiecutter"]), str(template_repo),
    )  # fmt: skip
    assert linked.returncode == 0, linked.stdout + linked.stderr
    assert json.loads((project / ".cruft.json").read_text(encoding="utf-8"))["commit"] == commits["v0.1.0"]
    commit_all(env, project, "Link to the template with cruft")

    updated = update_to_v0_2_0(env, project)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert (project / "README.md").read_text(encoding="utf-8").rstrip().endswith(TEMPLATE_CHANGE)
    assert sorted(path.name for path in project.rglob("*.rej")) == []
