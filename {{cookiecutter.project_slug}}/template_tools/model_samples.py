# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The model inputs local mode sends: model/samples.jsonl, or a file of the team's own events.

Local mode, soak, bench, send and the pipeline tests know nothing about the model's fields: they
draw whole inputs from this file and wrap them in the event envelope themselves. A line is one
JSON object: a model input, or an envelope ({"event_id", "event_time", "features"}) whose
`features` is one, as a producer would send it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from chalicelib.template_runtime.feature_events import is_envelope

from .stage import PROJECT_DIR

SAMPLES_FILE = PROJECT_DIR / "model" / "samples.jsonl"


class SamplesError(ValueError):
    """The samples file is missing, empty or has a line that is not a JSON object; says which."""


def load_samples(path: Path = SAMPLES_FILE) -> list[dict[str, Any]]:
    """Every model input in `path`, in file order; an envelope line gives its `features`."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise SamplesError(f"{path} does not exist: write sample model inputs there, one JSON object a line") from None
    samples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            document = json.loads(line)
        except json.JSONDecodeError as error:
            raise SamplesError(f"{path}:{number}: not JSON ({error})") from None
        if isinstance(document, dict) and is_envelope(document):
            document = document["features"]
        if not isinstance(document, dict):
            raise SamplesError(f"{path}:{number}: a model input must be a JSON object")
        samples.append(document)
    if not samples:
        raise SamplesError(f"{path} holds no model inputs: add one JSON object a line")
    return samples


def draw_samples(count: int, seed: int, path: Path = SAMPLES_FILE) -> list[dict[str, Any]]:
    """`count` inputs from `path`: the whole file in a seeded order, again and again as needed."""
    samples = load_samples(path)
    rng = random.Random(seed)
    drawn: list[dict[str, Any]] = []
    while len(drawn) < count:
        order = list(range(len(samples)))
        rng.shuffle(order)
        drawn.extend(samples[index] for index in order[: count - len(drawn)])
    return drawn
