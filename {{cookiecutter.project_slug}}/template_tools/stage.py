# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A Chalice stage's settings from .chalice/config.json, and putting its environment in place."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from chalice.config import Config
from chalice.constants import DEFAULT_LAMBDA_MEMORY_SIZE, DEFAULT_LAMBDA_TIMEOUT

from chalicelib.template_runtime.settings import TRIGGER_REPORTS_BATCH_ITEM_FAILURES

PROJECT_DIR = Path(__file__).resolve().parent.parent
HANDLER_NAME = "handle_feature_events"
CHALICE_CONFIG = Path(".chalice") / "config.json"
# Chalice names each function `<app>-<stage>-<handler>`, and Lambda allows 64 characters.
LAMBDA_FUNCTION_NAME_LIMIT = 64
# The stage is part of the CloudFormation stack name `<app>-<stage>` (letters, digits, hyphens)
# and of the function names (which would also take underscores).
STAGE_NAME = re.compile(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*")


class UnknownStageError(ValueError):
    """The stage is not in .chalice/config.json; the message lists the stages that are."""


class StageNameError(UnknownStageError):
    """The stage is in .chalice/config.json, but AWS cannot name its resources after it.

    An UnknownStageError, so every command that reports an unknown stage reports this one too.
    """


@dataclass(frozen=True)
class StageSettings:
    """What Lambda would run the handler with in one stage."""

    stage: str
    app_name: str
    function_name: str
    environment_variables: dict[str, str]
    lambda_timeout: int
    lambda_memory_size: int


def load_stage(stage: str = "dev", project_dir: Path = PROJECT_DIR, handler_name: str = HANDLER_NAME) -> StageSettings:
    """Read one stage of `project_dir/.chalice/config.json` for the named handler."""
    config_path = project_dir / CHALICE_CONFIG
    config_from_disk = json.loads(config_path.read_text())
    stages = sorted(config_from_disk.get("stages", {}))
    if stage not in stages:
        raise UnknownStageError(f"stage {stage!r} is not in {config_path}; known stages: {', '.join(stages)}")
    problem = stage_name_problem(stage, config_from_disk.get("app_name", ""), handler_name)
    if problem:
        raise StageNameError(problem)
    # Chalice's own Config applies its precedence (top level, stage, per-function overrides),
    # so local mode runs with exactly the environment `chalice deploy` would give the function.
    config = Config(chalice_stage=stage, function_name=handler_name, config_from_disk=config_from_disk)
    return StageSettings(
        stage=stage,
        app_name=config.app_name,
        # Chalice names each function <app>-<stage>-<handler>.
        function_name=f"{config.app_name}-{stage}-{handler_name}",
        environment_variables={name: str(value) for name, value in config.environment_variables.items()},
        lambda_timeout=config.lambda_timeout or DEFAULT_LAMBDA_TIMEOUT,
        lambda_memory_size=config.lambda_memory_size or DEFAULT_LAMBDA_MEMORY_SIZE,
    )


def stage_name_problem(stage: str, app_name: str, handler_name: str = HANDLER_NAME) -> str | None:
    """Say why AWS cannot name a stage's resources after it, and how to fix it; None if it can."""
    if not STAGE_NAME.fullmatch(stage):
        return (
            f"stage {stage!r} may have only letters, digits and hyphens (between the others): it is part of the "
            f"CloudFormation stack name {app_name}-{stage} and of its Lambda function names. Rename the stage in "
            f"{CHALICE_CONFIG}"
        )
    function_name = f"{app_name}-{stage}-{handler_name}"
    if len(function_name) > LAMBDA_FUNCTION_NAME_LIMIT:
        room = LAMBDA_FUNCTION_NAME_LIMIT - len(f"{app_name}--{handler_name}")
        return (
            f"stage {stage!r} is too long for app {app_name!r}: Chalice names its function {function_name} "
            f"({len(function_name)} characters) and Lambda allows {LAMBDA_FUNCTION_NAME_LIMIT}. Rename the stage in "
            f"{CHALICE_CONFIG} to at most {room} characters, or shorten app_name there"
        )
    return None


@contextmanager
def patched_environ(variables: Mapping[str, str | None]) -> Iterator[None]:
    """Set (or, for None, remove) environment variables, and put every old value back afterwards."""
    saved = {name: os.environ.get(name) for name in variables}
    try:
        for name, value in variables.items():
            _set_or_remove(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set_or_remove(name, value)


def packaged_environment(settings: StageSettings) -> dict[str, str]:
    """The environment the packaged stack gives the function: the stage's, and what the merge template adds.

    The local triggers act on a failure list as the packaged stack's trigger does, so local
    runs say so as deploy/merge_template.py does (chalicelib/template_runtime/batch.py, WholeBatchRetry).
    """
    return settings.environment_variables | {TRIGGER_REPORTS_BATCH_ITEM_FAILURES: "true"}


def stage_environment(settings: StageSettings) -> AbstractContextManager[None]:
    """Put the stage's environment into os.environ, as Lambda does in the packaged stack, until the block ends."""
    return patched_environ(packaged_environment(settings))


def _set_or_remove(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
