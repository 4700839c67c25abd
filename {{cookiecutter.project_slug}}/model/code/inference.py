"""SageMaker inference entry points: the example item-to-item recommender, and the request handling around it.

SageMaker's framework containers (deploy/config.json names the one) pip-install `requirements.txt`,
import this file from `/opt/ml/model/code/` and call, per request, input_fn -> predict_fn ->
output_fn, after calling model_fn once at start-up. The local endpoint runs it the same way, in
a virtualenv holding requirements.txt only, so what passes locally is what runs in AWS.

To serve your own model, replace `load_model` and `predict` below, and describe one input record
in `input.schema.json` next to this file. The rest (model_fn, input_fn, predict_fn, output_fn)
is generic: it validates each record against that schema, filling in its defaults, and keeps
the request and response shapes the streaming handler relies on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import fastjsonschema

# ---------------------------------------------------------------------------------------------
# The model: replace this part (its artifact, load_model and predict) with your own.
# ---------------------------------------------------------------------------------------------

MODEL_FILE = "cooccurrence.json"
MODEL_FORMAT = "item-cooccurrence/1"


@dataclass(frozen=True)
class Recommender:
    """The loaded model: each item's scored neighbours, and best-sellers for cold starts."""

    neighbours: dict[str, list[tuple[str, float]]]
    popular: list[str]


def load_model(model_dir: Path) -> Recommender:
    """Load the artifact `make train` wrote into the model directory."""
    document = json.loads((model_dir / MODEL_FILE).read_text(encoding="utf-8"))
    if document.get("format") != MODEL_FORMAT:
        raise ValueError(f"{MODEL_FILE}: expected format {MODEL_FORMAT!r}")
    neighbours = {
        item: [(other, float(score)) for other, score in ranked] for item, ranked in document["neighbours"].items()
    }
    return Recommender(neighbours, [item for item, _share in document["popular"]])


def predict(record: dict, model: Recommender) -> dict:
    """Recommend `k` items the user has not seen, from the neighbours of their recent items.

    An item's score is the sum of its similarity to each recent item, so an item close to
    several of them ranks first. When the recent items are unknown or have too few neighbours,
    best-sellers fill the list with score 0.0: they are a fallback, not a similarity.
    """
    seen = set(record["recent_items"])
    scores: dict[str, float] = {}
    for item in record["recent_items"]:
        for other, similarity in model.neighbours.get(item, ()):
            if other not in seen:
                scores[other] = scores.get(other, 0.0) + similarity
    ranked = sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))[: record["k"]]
    chosen = {item for item, _score in ranked}
    for item in model.popular:
        if len(ranked) == record["k"]:
            break
        if item not in seen and item not in chosen:
            ranked.append((item, 0.0))
    return {
        "user_id": record["user_id"],
        "items": [{"item_id": item, "score": round(score, 4)} for item, score in ranked],
    }


# ---------------------------------------------------------------------------------------------
# The SageMaker contract: request parsing, validation and response encoding.
# ---------------------------------------------------------------------------------------------

JSON = "application/json"
JSON_LINES = "application/jsonlines"


@dataclass(frozen=True)
class Batch:
    """Validated records, and whether the request was a single object, a batch or JSON lines."""

    records: list[dict]
    shape: str  # "single", "instances" or "lines"


@dataclass(frozen=True)
class Predictions:
    """One output per record, in request order, remembering the request's shape."""

    outputs: list[dict]
    shape: str


# The one description of a model input record; the streaming handler checks records against it
# too, before they cost an endpoint call. use_default fills in what a record leaves out.
INPUT_SCHEMA_FILE = Path(__file__).with_name("input.schema.json")
_validate_input = fastjsonschema.compile(json.loads(INPUT_SCHEMA_FILE.read_text(encoding="utf-8")), use_default=True)


def model_fn(model_dir: str) -> object:
    """Called once when the container starts."""
    return load_model(Path(model_dir))


def input_fn(request_body: str | bytes, request_content_type: str) -> Batch:
    """Parse and validate the request; any bad record fails the whole request with ValueError."""
    if isinstance(request_body, bytes):
        try:
            request_body = request_body.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"request body is not UTF-8: {error}") from None
    content_type = _media_type(request_content_type)
    if content_type == JSON:
        document = _parse_json(request_body, "request body")
        if isinstance(document, dict) and "instances" in document:
            instances = document["instances"]
            if not isinstance(instances, list):
                raise ValueError("field 'instances' must be a list of records")
            return Batch([_validated(r, index) for index, r in enumerate(instances)], "instances")
        return Batch([_validated(document, 0)], "single")
    if content_type == JSON_LINES:
        lines = [line for line in request_body.splitlines() if line.strip()]
        records = [_parse_json(line, f"record {index}") for index, line in enumerate(lines)]
        return Batch([_validated(r, index) for index, r in enumerate(records)], "lines")
    raise ValueError(f"content type {request_content_type!r} is not supported; use {JSON} or {JSON_LINES}")


def predict_fn(input_data: Batch, model: object) -> Predictions:
    """Run `predict` on every record, keeping the request order."""
    return Predictions([predict(record, model) for record in input_data.records], input_data.shape)


def output_fn(prediction: Predictions, accept: str | None) -> tuple[str, str]:
    """Encode the outputs in the request's shape; return (body, content type).

    With no Accept header (or */*) the answer uses the request's own format, which is what
    the streaming handler expects.
    """
    media_type = _media_type(accept or "*/*")
    if media_type == "*/*":
        media_type = JSON_LINES if prediction.shape == "lines" else JSON
    if media_type == JSON_LINES:
        return "".join(json.dumps(output) + "\n" for output in prediction.outputs), JSON_LINES
    if media_type == JSON:
        if prediction.shape == "single":
            return json.dumps(prediction.outputs[0]), JSON
        return json.dumps(dict(predictions=prediction.outputs)), JSON
    raise ValueError(f"accept type {accept!r} is not supported; use {JSON} or {JSON_LINES}")


def _media_type(content_type: str) -> str:
    """Drop parameters such as `; charset=utf-8`, which clients add freely."""
    return content_type.split(";", 1)[0].strip().lower()


def _parse_json(text: str, where: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where} is not valid JSON: {error}") from None


def _validated(record: object, index: int) -> dict:
    """Check one model input record against input.schema.json and fill in its defaults.

    Messages name the record's position and the field so that a caller holding a batch can
    tell which of its records was at fault.
    """
    try:
        return _validate_input(record)
    except fastjsonschema.JsonSchemaValueException as error:
        raise ValueError(f"record {index}: {error.message}") from None
