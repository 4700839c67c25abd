"""Fixtures that bake the template into tmp_path and load its rendered hooks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from baking import Bake, bake_into, default_answers, render_hook


@pytest.fixture
def bake(tmp_path: Path) -> Callable[..., Bake]:
    """Bake the template into this test's tmp_path (see bake_into for the arguments)."""
    runs = iter(range(1_000))

    def _bake(
        answers: Mapping[str, Any] | None = None, *, replay_answers: Mapping[str, Any] | None = None
    ) -> Bake:
        return bake_into(tmp_path / f"bake-{next(runs)}", answers, replay_answers=replay_answers)

    return _bake


@pytest.fixture(scope="session")
def pre_gen_hook(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """Render the pre-generation hook with the default answers and imported as a module."""
    return render_hook("pre_gen_project", default_answers(), tmp_path_factory.mktemp("pre-hook"))


@pytest.fixture(scope="session")
def post_gen_hook(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """Render the post-generation hook with the default answers and imported as a module."""
    return render_hook("post_gen_project", default_answers(), tmp_path_factory.mktemp("post-hook"))
