# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A test double of a model: it echoes each record's id and scales its value by the artifact's factor.

It exists so that the template's machinery tests (template_tools/tests/) never depend on the
team's model: they serve this model through the local endpoint and send it inputs of its own
schema (code/input.schema.json), whatever model/ holds. It keeps the SageMaker contract of
model/code/inference.py (model_fn, input_fn, predict_fn, output_fn; a JSON object, a JSON
{"instances": [...]} batch or JSON lines; the Accept header) with the standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

JSON = "application/json"
JSON_LINES = "application/jsonlines"
ARTIFACT = "echo.json"
ARTIFACT_FORMAT = "echo/1"
MAX_ID_LENGTH = 256


@dataclass(frozen=True)
class Batch:
    records: list[dict]
    shape: str  # "single", "instances" or "lines"


@dataclass(frozen=True)
class Predictions:
    outputs: list[dict]
    shape: str


def load_model(model_dir: Path) -> float:
    """The scale factor from echo.json, so that loading an artifact is exercised too."""
    document = json.loads((model_dir / ARTIFACT).read_text(encoding="utf-8"))
    if document.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{ARTIFACT}: expected format {ARTIFACT_FORMAT!r}")
    return float(document["scale"])


def predict(record: dict, scale: float) -> dict:
    return {"id": record["id"], "value_scaled": record.get("value", 0) * scale}


def model_fn(model_dir: str) -> float:
    return load_model(Path(model_dir))


def input_fn(request_body: str | bytes, request_content_type: str) -> Batch:
    """Parse and check the request; any bad record fails the whole request with ValueError."""
    if isinstance(request_body, bytes):
        try:
            request_body = request_body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"request body is not UTF-8: {error}") from None
    content_type = _media_type(request_content_type)
    if content_type == JSON:
        document = _parse_json(request_body, "request body")
        if isinstance(document, dict) and "instances" in document:
            if not isinstance(document["instances"], list):
                raise ValueError("field 'instances' must be a list of records")
            return Batch([_checked(r, n) for n, r in enumerate(document["instances"])], "instances")
        return Batch([_checked(document, 0)], "single")
    if content_type == JSON_LINES:
        lines = [line for line in request_body.splitlines() if line.strip()]
        return Batch([_checked(_parse_json(line, f"record {n}"), n) for n, line in enumerate(lines)], "lines")
    raise ValueError(f"content type {request_content_type!r} is not supported; use {JSON} or {JSON_LINES}")


def predict_fn(input_data: Batch, scale: float) -> Predictions:
    return Predictions([predict(record, scale) for record in input_data.records], input_data.shape)


def output_fn(prediction: Predictions, accept: str | None) -> tuple[str, str]:
    """The outputs in the request's shape; with no Accept header (or */*), in the request's format."""
    media_type = _media_type(accept or "*/*")
    if media_type == "*/*":
        media_type = JSON_LINES if prediction.shape == "lines" else JSON
    if media_type == JSON_LINES:
        return "".join(json.dumps(output) + "\n" for output in prediction.outputs), JSON_LINES
    if media_type == JSON:
        if prediction.shape == "single":
            return json.dumps(prediction.outputs[0]), JSON
        return json.dumps({"predictions": prediction.outputs}), JSON
    raise ValueError(f"accept type {accept!r} is not supported; use {JSON} or {JSON_LINES}")


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _parse_json(text: str, where: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not valid JSON: {error}") from None


def _checked(record: object, index: int) -> dict:
    """input.schema.json, checked by hand: no jsonschema in a model without requirements."""
    if not isinstance(record, dict):
        raise ValueError(f"record {index}: must be a JSON object")
    record_id = record.get("id")
    if not isinstance(record_id, str) or not 1 <= len(record_id) <= MAX_ID_LENGTH:
        raise ValueError(f"record {index}: field 'id' must be a string of 1 to {MAX_ID_LENGTH} characters")
    value = record.get("value", 0)
    # bool is an int in Python; `"value": true` is a client bug, not 1.
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"record {index}: field 'value' must be a number")
    return record
