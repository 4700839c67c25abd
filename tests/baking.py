"""Bake the template with an isolated cookiecutter config, and render its hooks as modules."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cookiecutter.exceptions import CookiecutterException
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config
from cookiecutter.utils import create_env_with_context

TEMPLATE_DIR = Path(__file__).resolve().parents[1]
HOOKS_DIR = TEMPLATE_DIR / "hooks"


@dataclass(frozen=True)
class Bake:
    """What one run of cookiecutter left: the project folder, or the error that stopped it."""

    output_dir: Path
    project_dir: Path | None
    error: Exception | None

    @property
    def succeeded(self) -> bool:
        """Say whether cookiecutter generated a project."""
        return self.error is None and self.project_dir is not None


def isolated_config(root: Path) -> Path:
    """Write a cookiecutter user config whose replay and clone folders live under root."""
    config = root / "cookiecutter-config.yaml"
    # JSON is valid YAML, and it quotes the paths safely.
    config.write_text(
        json.dumps(
            {
                "cookiecutters_dir": str(root / "cookiecutters"),
                "replay_dir": str(root / "replay"),
                "default_context": {},
            }
        ),
        encoding="utf-8",
    )
    return config


def default_answers(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the answers `--no-input` would give, with overrides applied the way prompts are."""
    context = generate_context(
        context_file=str(TEMPLATE_DIR / "cookiecutter.json"), extra_context=dict(overrides or {})
    )
    return dict(prompt_for_config(context, no_input=True))


def bake_into(
    root: Path,
    answers: Mapping[str, Any] | None = None,
    *,
    replay_answers: Mapping[str, Any] | None = None,
) -> Bake:
    """Run cookiecutter into root/out with an isolated config.

    `answers` are given as `--no-input` extra context, the way a user passes `key=value`.
    `replay_answers` instead edit a replay file (as the hook's error message tells users to do),
    which also lets a test send values cookiecutter itself would refuse before any hook runs,
    such as an unlisted region.
    """
    root.mkdir(parents=True, exist_ok=True)
    output_dir = root / "out"
    output_dir.mkdir()
    config = isolated_config(root)
    kwargs: dict[str, Any] = {"no_input": True, "extra_context": dict(answers or {})}
    if replay_answers is not None:
        replayed = default_answers() | dict(replay_answers)
        replay_file = root / "edited-replay.json"
        replay_file.write_text(
            json.dumps({"cookiecutter": replayed, "_cookiecutter": replayed}), encoding="utf-8"
        )
        kwargs = {"replay": str(replay_file)}
    try:
        project = cookiecutter(
            str(TEMPLATE_DIR), output_dir=str(output_dir), config_file=str(config), **kwargs
        )
    except (CookiecutterException, ValueError) as error:
        return Bake(output_dir, None, error)
    return Bake(output_dir, Path(project), None)


def render_hook(name: str, answers: Mapping[str, Any], directory: Path) -> ModuleType:
    """Render hooks/<name>.py with the answers exactly as cookiecutter does, then import it."""
    context = {"cookiecutter": dict(answers)}
    source = (HOOKS_DIR / f"{name}.py").read_text(encoding="utf-8")
    rendered = create_env_with_context(context).from_string(source).render(**context)
    path = directory / f"{name}.py"
    path.write_text(rendered, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"rendered_{name}_{id(path)}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ruff_executable() -> Path:
    """Find the ruff installed beside the running Python (the one the lock pins)."""
    ruff = Path(sys.executable).with_name("ruff")
    if not ruff.exists():
        pytest.fail(f"ruff is not installed next to {sys.executable}; install requirements-test.txt")
    return ruff
