# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A Chalice stage's settings from .chalice/config.json, and putting its environment in place."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from chalice.config import Config
from chalice.constants import DEFAULT_LAMBDA_MEMORY_SIZE, DEFAULT_LAMBDA_TIMEOUT

from chalicelib.template_runtime.settings import TRIGGER_REPORTS_BATCH_ITEM_FAILURES

PROJECT_DIR = Path(__file__).resolve().parent.parent
HANDLER_NAME = "handle_feature_events"


class UnknownStageError(ValueError):
    """The stage is not in .chalice/config.json; the message lists the stages that are."""


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
    config_path = project_dir / ".chalice" / "config.json"
    config_from_disk = json.loads(config_path.read_text())
    stages = sorted(config_from_disk.get("stages", {}))
    if stage not in stages:
        raise UnknownStageError(f"stage {stage!r} is not in {config_path}; known stages: {', '.join(stages)}")
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
