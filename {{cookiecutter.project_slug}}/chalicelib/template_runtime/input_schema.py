# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Checks each record's model input against the model's JSON Schema before the endpoint sees it.

A record that breaks the schema would fail at the endpoint anyway; refusing it here costs no
InvokeEndpoint call, keeps it from failing a whole batch request, and gives a precise reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastjsonschema

# Relative paths are read from the function's code root, where app.py and chalicelib/ live: the
# project folder locally, /var/task in Lambda, where `make package` puts a copy of
# model/code/input.schema.json at the same relative path (through Chalice's vendor/ folder).
CODE_ROOT = Path(__file__).resolve().parents[2]


class InputSchema:
    """A compiled schema; compiling once per process keeps the check to microseconds a record."""

    def __init__(self, schema: dict[str, Any]) -> None:
        # Checking only: defaults in the schema are for the model to fill in, the record passes on unchanged.
        self._validate = fastjsonschema.compile(schema, use_default=False)

    @classmethod
    def from_setting(cls, path: str) -> InputSchema | None:
        """The schema the setting names, or None when the setting is empty (no check)."""
        if not path:
            return None
        try:
            text = (CODE_ROOT / path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"model input schema {path} is not in the function's code: deploy with `make deploy`, "
                "which copies it into the package (vendor/), or set MODEL_INPUT_SCHEMA to '' to skip the check"
            ) from None
        return cls(json.loads(text))

    def violation(self, features: dict[str, Any]) -> str | None:
        """Why the input breaks the schema, or None when it conforms."""
        try:
            self._validate(features)
        except fastjsonschema.JsonSchemaValueException as error:
            return error.message
        return None
