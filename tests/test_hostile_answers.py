"""Bake with hostile or impossible answers: each is refused cleanly, or carried as plain data."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from baking import Bake, ruff_executable

INJECTION = '"; import os; os.system("touch pwned"); "'

# (changed answers, the option the message must name). Passed as `--no-input` extra context.
REFUSED: list[tuple[dict[str, str], str]] = [
    ({"project_slug": 'recs"quoted'}, "project_slug"),
    ({"project_slug": "recs\\slashed"}, "project_slug"),
    ({"project_slug": INJECTION}, "project_slug"),
    ({"project_slug": "recs\nimport os"}, "project_slug"),
    ({"project_slug": "a" * 38}, "project_slug"),
    ({"project_name": "Recs\nimport os"}, "project_name"),
    ({"package_name": INJECTION}, "package_name"),
    ({"package_name": "import"}, "package_name"),
    ({"package_name": "json"}, "package_name"),
    ({"endpoint_name": "a" * 60}, "endpoint_name"),
    ({"endpoint_name": 'model"; rm -rf /'}, "endpoint_name"),
    ({"model_version": '1"; import os; "'}, "model_version"),
    ({"model_version": "1\\"}, "model_version"),
    ({"model_version": "1\n2"}, "model_version"),
    ({"description": "two\nlines"}, "description"),
    ({"features_source_name": "a" * 81}, "features_source_name"),
    ({"features_source_name": "features.fifo"}, "features_source_name"),
    ({"predictions_destination_name": "predictions.fifo"}, "predictions_destination_name"),
    ({"dead_letter_queue_name": "dead-letters.fifo"}, "dead_letter_queue_name"),
    ({"dead_letter_queue_name": "product-recommendations-features"}, "dead_letter_queue_name"),
    ({"batch_size": "20", "maximum_batching_window_seconds": "0"}, "batch_size"),
    ({"batch_size": "ten"}, "batch_size"),
    ({"batch_size": "1.5"}, "batch_size"),
    ({"maximum_concurrency": ""}, "maximum_concurrency"),
    ({"max_receive_count": "3"}, "max_receive_count"),
    ({"lambda_timeout_seconds": "900", "visibility_timeout_seconds": "60"}, "visibility_timeout_seconds"),
    ({"endpoint_call_mode": "per-record", "records_per_endpoint_call": "100"}, "records_per_endpoint_call"),
    ({"endpoint_concurrency": "0"}, "endpoint_concurrency"),
    ({"endpoint_instance_type": "m5.large"}, "endpoint_instance_type"),
    ({"endpoint_instance_type": INJECTION}, "endpoint_instance_type"),
    ({"serverless_max_concurrency": "201"}, "serverless_max_concurrency"),
    ({"model_framework": "custom"}, "model_image_uri"),
    ({"model_framework": "custom", "model_image_uri": INJECTION}, "model_image_uri"),
    ({"model_framework": "custom", "model_image_uri": "recs-server:latest"}, "model_image_uri"),
    ({"model_image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/recs-server:2.1"}, "model_image_uri"),
]


def refusal_id(case: object) -> str | None:
    """Name a refusal case by its answers, `key:value`, shortened and on one line."""
    if not isinstance(case, dict):
        return None
    text = ",".join(f"{key}:{value}" for key, value in case.items())
    return ascii(text[:40]).strip("'")


def assert_refused(result: Bake, option: str, stderr: str) -> None:
    """Check a bake stopped, named the option with a way to rerun, and left nothing behind."""
    assert not result.succeeded
    assert f"  {option} = " in stderr
    assert "cookiecutter --replay" in stderr
    assert list(result.output_dir.iterdir()) == []


@pytest.mark.parametrize(("answers", "option"), REFUSED, ids=[refusal_id(a) for a, _ in REFUSED])
def test_a_bad_answer_stops_generation_and_leaves_nothing_behind(
    bake: Callable[..., Bake], capfd: pytest.CaptureFixture[str], answers: dict[str, str], option: str
) -> None:
    """Bad answers must fail before any file is written, with a message naming the option."""
    result = bake(answers)
    assert_refused(result, option, capfd.readouterr().err)


@pytest.mark.parametrize(
    ("answers", "option"),
    [
        ({"aws_region": "mars-north-1"}, "aws_region"),
        ({"aws_region": "eu-west-1; rm -rf /"}, "aws_region"),
        ({"lambda_runtime": "python3.9"}, "lambda_runtime"),
        ({"endpoint_content_type": "text/csv"}, "endpoint_content_type"),
        ({"model_framework": "tensorflow"}, "model_framework"),
    ],
    ids=refusal_id,
)
def test_an_edited_replay_file_is_validated_like_fresh_answers(
    bake: Callable[..., Bake], capfd: pytest.CaptureFixture[str], answers: dict[str, str], option: str
) -> None:
    """The error tells users to edit the replay file, which bypasses cookiecutter's choice lists."""
    result = bake(replay_answers=answers)
    assert_refused(result, option, capfd.readouterr().err)


def test_every_problem_is_reported_in_one_run(
    bake: Callable[..., Bake], capfd: pytest.CaptureFixture[str]
) -> None:
    """Users fix all answers in one edit instead of discovering them one failed run at a time."""
    result = bake({"package_name": "import", "batch_size": "20", "lambda_memory_mb": "64"})
    stderr = capfd.readouterr().err
    assert not result.succeeded
    assert "3 answers need fixing" in stderr
    for option in ("package_name", "batch_size", "lambda_memory_mb"):
        assert f"  {option} = " in stderr


def test_a_fixed_replay_file_generates_the_project(bake: Callable[..., Bake]) -> None:
    """The rerun the error message suggests (`--replay` after editing) must work."""
    assert bake(replay_answers={"batch_size": "20", "maximum_batching_window_seconds": "1"}).succeeded


def test_a_hostile_description_is_carried_as_data(bake: Callable[..., Bake], tmp_path: Path) -> None:
    """Quotes, backslashes and code in free text must render verbatim and never execute."""
    marker = tmp_path / "pwned"
    description = f"Recs \"quoted\" 'single' \\back\\slash \\n {INJECTION.replace('pwned', str(marker))} #"
    result = bake({"description": description})
    assert result.succeeded, result.error
    assert result.project_dir is not None
    readme = (result.project_dir / "README.md").read_text(encoding="utf-8")
    assert description in readme
    assert not marker.exists()
    assert not (result.project_dir / "pwned").exists()
    lint = subprocess.run(
        [str(ruff_executable()), "check", "--no-cache", "."],
        cwd=result.project_dir,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout


@pytest.mark.xfail(
    strict=True,
    reason="cookiecutter creates <output>/<slug> with makedirs before the pre-gen hook runs and "
    "removes only the last folder, so a slug with a slash leaves its first part behind (empty)",
)
def test_a_slug_with_a_slash_leaves_nothing_behind(
    bake: Callable[..., Bake], capfd: pytest.CaptureFixture[str]
) -> None:
    """Keeps cookiecutter's one gap visible: the answer is refused, but an empty folder stays."""
    result = bake({"project_slug": "outer/inner"})
    assert_refused(result, "project_slug", capfd.readouterr().err)
