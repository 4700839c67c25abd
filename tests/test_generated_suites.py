"""Slow tier: bake each curated combination and run the generated project's own test suite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from baking import bake_into
from test_bake import COMBINATIONS, combination_id

# A generated suite that hangs must fail this tier, not stall it.
SUITE_TIMEOUT_SECONDS = 600


@pytest.mark.slow
@pytest.mark.parametrize("answers", COMBINATIONS, ids=combination_id)
def test_each_baked_project_passes_its_own_tests(answers: dict[str, str], tmp_path: Path) -> None:
    """Every combination must generate a project whose own tests pass out of the box."""
    result = bake_into(tmp_path, answers)
    assert result.succeeded, result.error
    # The shared venv already holds the generated project's dependencies; a fresh bake per test
    # keeps the fast tier's baked copies untouched by what the suite writes.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST_")}
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=result.project_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT_SECONDS,
        check=False,
    )
    assert suite.returncode == 0, suite.stdout[-6000:] + suite.stderr[-2000:]
