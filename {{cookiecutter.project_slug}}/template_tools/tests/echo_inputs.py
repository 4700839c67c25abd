# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Inputs for the echo model (template_tools/echo_model/) and its answers, for tests that need them.

The machinery's tests serve the echo model, never the team's, so they hold whatever model/ holds.
A keyed project (PARTITION_KEY_FIELD in the stage's environment: Kinesis or DynamoDB predictions)
needs that field in every input; it is added here from the stage's settings, whatever its name.
"""

import json
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from template_tools.stage import load_stage

ECHO_MODEL_DIR = Path(__file__).resolve().parent.parent / "echo_model"
ECHO_INPUT_SCHEMA = ECHO_MODEL_DIR / "code" / "input.schema.json"
KEY_FIELD = load_stage("dev").environment_variables.get("PARTITION_KEY_FIELD", "").strip()


def echo_input(number: int, key: str | None = None, **fields) -> dict:
    """A valid input, told apart by its id (`rec-0007`); in a keyed project, under its own key unless given one."""
    record = {"id": f"rec-{number:04d}", "value": number + 0.5}
    if KEY_FIELD:
        record[KEY_FIELD] = key or f"key-{number:04d}"
    return record | fields


def echo_body(number: int, **fields) -> str:
    return json.dumps(echo_input(number, **fields))


def id_marker(number: int) -> str:
    """What finds the record's id inside a request or a prediction body."""
    return json.dumps(f"rec-{number:04d}")


def broken_json_body(number: int) -> str:
    """A body cut off mid-way, as a producer that crashed while writing would leave it."""
    body = echo_body(number)
    return body[: len(body) // 2]


def schema_breaking_input(number: int) -> dict:
    """Valid JSON the echo schema refuses: the required id is missing."""
    return {key: value for key, value in echo_input(number).items() if key != "id"}


def model_rejected_input(number: int) -> dict:
    """An input the echo model itself rejects (a value that is no number); the schema check would too."""
    return echo_input(number, value="not a number")


def expected_output(record: dict, model_dir: Path = ECHO_MODEL_DIR) -> dict:
    """What the echo model answers for one record, asked through its own SageMaker functions."""
    inference = _echo_inference()
    batch = inference.input_fn(json.dumps(record), "application/json")
    body, _ = inference.output_fn(inference.predict_fn(batch, _echo_model(str(model_dir))), "application/json")
    return json.loads(body)


@cache
def _echo_inference() -> ModuleType:
    """The echo model's inference.py as a module, compiled in memory: no __pycache__ in the model's code."""
    path = ECHO_MODEL_DIR / "code" / "inference.py"
    module = ModuleType("echo_inference")
    module.__file__ = str(path)
    # Dataclasses look their module up while the class is made.
    sys.modules[module.__name__] = module
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), module.__dict__)
    return module


@cache
def _echo_model(model_dir: str):
    return _echo_inference().model_fn(model_dir)
