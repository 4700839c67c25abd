"""Unit tests of the post-generation hook, called on the rendered and imported hook."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from baking import Bake


def test_the_next_steps_say_how_to_run_test_and_replace_the_model(
    post_gen_hook: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new user must learn the two commands and where their own model goes."""
    project = tmp_path / "product-recommendations"
    project.mkdir()
    monkeypatch.setenv("PWD", str(tmp_path))
    steps = post_gen_hook.next_steps(post_gen_hook.ANSWERS, project)
    assert "cd product-recommendations\n" in steps
    assert "make local" in steps
    assert "make test" in steps
    for contract_file in (
        "model/code/inference.py",
        "input.schema.json",
        "samples.jsonl",
        "tests/test_model.py",
    ):
        assert contract_file in steps
    assert "product_recommendations/train.py" in steps


def test_the_project_path_is_absolute_when_generated_outside_the_current_folder(
    post_gen_hook: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `-o elsewhere`, a bare `cd <slug>` would not find the project."""
    project = tmp_path / "out" / "product-recommendations"
    project.mkdir(parents=True)
    monkeypatch.setenv("PWD", str(tmp_path / "somewhere-else"))
    assert post_gen_hook.shown_path(project) == str(project.resolve())


def test_the_hook_does_not_make_a_git_repository(
    bake: Callable[..., Bake], capfd: pytest.CaptureFixture[str]
) -> None:
    """Where the project is versioned (new repo, monorepo, cruft) is the team's choice."""
    result = bake()
    assert result.succeeded, result.error
    assert result.project_dir is not None
    assert not (result.project_dir / ".git").exists()
    assert "make local" in capfd.readouterr().out
