# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Writes events/: Lambda events as the project's trigger hands them to the handler, made from model/samples.jsonl.

    python -m template_tools.sample_event_files [--samples model/samples.jsonl] [--out events] [--seed 7]

feature-events.json    three records: a bare model input, then two producer envelopes
                       ({"event_id", "event_time", "features"}); the handler predicts all three.
malformed-record.json  three records: a well-formed envelope; one cut off mid-way, as a producer
                       that crashed while writing would leave it (dead-lettered InvalidJson); one
                       whose input breaks the model's input schema (SchemaViolation; InvalidInput,
                       JSON that is not an object, when nothing breaks the schema).

The model inputs are drawn from the samples file, so the events follow the model a team brings
(`make events` writes them again). The source's own Lambda record builder (template_tools/source.py)
makes each record, in the shape the local trigger gives the handler, as the prod stage's trigger
would deliver it. Ids, timestamps and sequence numbers come from the seed: unchanged samples give
byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from chalicelib.template_runtime.source import FEATURES_SOURCE_VARIABLE

from .features_producer import event_group, producer_key_field
from .lambda_trigger import DeliveryStamps
from .local_pipeline import load_input_schema, model_input_schema_path, not_an_object, schema_breaking
from .model_samples import SAMPLES_FILE, SamplesError, draw_samples
from .operator_stage import deployed_region
from .source import SOURCE_ARN_FORMAT, lambda_records
from .stage import PROJECT_DIR, UnknownStageError, load_stage

FEATURE_EVENTS = "feature-events.json"
MALFORMED_RECORD = "malformed-record.json"
EVENTS_DIR = PROJECT_DIR / "events"
DEFAULT_SEED = 7
# The events name the resources of the stage deployed for real, as its trigger would deliver them.
STAGE = "prod"
# Lambda events carry the source's account; the samples use AWS's documentation account.
ACCOUNT_ID = "123456789012"
# How long before its delivery a producer made each event: the event's age when the handler sees it.
PRODUCER_LEAD = timedelta(seconds=1)


def produced_at(seed: int, number: int) -> str:
    """When the producer made event `number` of the file seeded `seed`: a little before its delivery, in order."""
    moment = DeliveryStamps(seed).time - PRODUCER_LEAD + timedelta(milliseconds=number)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cut_off(body: str) -> str:
    """A body cut off two thirds in, as a producer that crashed while writing would leave it: not JSON."""
    return body[: len(body) * 2 // 3]


def envelope_body(seed: int, number: int, features: Any) -> str:
    """Event `number` of the file seeded `seed`, in the envelope a producer sends."""
    document = {"event_id": f"evt-{seed}-{number}", "event_time": produced_at(seed, number), "features": features}
    return json.dumps(document, ensure_ascii=False)


def feature_event_bodies(inputs: Sequence[dict[str, Any]], seed: int) -> list[str]:
    """Both forms the handler takes: a bare model input, then producer envelopes around the others."""
    bare, *enveloped = inputs
    return [json.dumps(bare, ensure_ascii=False)] + [
        envelope_body(seed, number, features) for number, features in enumerate(enveloped, start=1)
    ]


def malformed_record_bodies(inputs: Sequence[dict[str, Any]], seed: int, schema: dict[str, Any] | None) -> list[str]:
    """A well-formed envelope; one cut off mid-way (InvalidJson); one whose input breaks the model's
    input schema (SchemaViolation), or, when nothing breaks the schema, JSON that is no object (InvalidInput)."""
    well_formed, truncated, valid = inputs
    broken = schema_breaking(valid, schema)
    breaking = not_an_object(envelope_body(seed, 2, valid)) if broken is None else envelope_body(seed, 2, broken)
    return [envelope_body(seed, 0, well_formed), cut_off(envelope_body(seed, 1, truncated)), breaking]


def lambda_event(bodies: Sequence[str], seed: int) -> dict[str, Any]:
    """A Lambda event of `bodies` from the stage's features source, each keyed as a producer keys it."""
    environment = load_stage(STAGE).environment_variables
    region = deployed_region()
    arn = SOURCE_ARN_FORMAT.format(region=region, account=ACCOUNT_ID, name=environment[FEATURES_SOURCE_VARIABLE])
    key_field = producer_key_field(environment)
    groups = [event_group(body, key_field) for body in bodies]
    return {"Records": lambda_records(bodies, groups, arn, region, seed=seed)}


def sample_event_files(
    samples_path: Path = SAMPLES_FILE, schema_path: Path | None = None, seed: int = DEFAULT_SEED
) -> dict[str, dict[str, Any]]:
    """Each file's name and its Lambda event; the same arguments always give the same events."""
    schema = load_input_schema(schema_path or model_input_schema_path(PROJECT_DIR / "model"))
    # Each file is delivered under a seed of its own, so no two records share an id.
    features_seed, malformed_seed = seed, seed + 1
    inputs = draw_samples(6, seed, samples_path)
    return {
        FEATURE_EVENTS: lambda_event(feature_event_bodies(inputs[:3], features_seed), features_seed),
        MALFORMED_RECORD: lambda_event(malformed_record_bodies(inputs[3:], malformed_seed, schema), malformed_seed),
    }


def write_sample_event_files(
    out_dir: Path = EVENTS_DIR,
    samples_path: Path = SAMPLES_FILE,
    schema_path: Path | None = None,
    seed: int = DEFAULT_SEED,
) -> list[Path]:
    """Write the sample events into `out_dir`, indented and with keys in a stable order; return the paths."""
    # Every event is made before a file is written: samples that cannot be read leave events/ as it was.
    events = sample_event_files(samples_path, schema_path, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, event in events.items():
        path = out_dir / name
        path.write_text(json.dumps(event, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: write events/ from the samples; exit 2 when the samples or the stage cannot be read."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--samples", type=Path, default=SAMPLES_FILE, help="model inputs, one JSON object a line (model/samples.jsonl)"
    )
    parser.add_argument("--out", type=Path, default=EVENTS_DIR, help="where the event files go (default events/)")
    parser.add_argument(
        "--schema", type=Path, help="the model's input schema to break (default model/code/input.schema.json)"
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of inputs, ids, times ({DEFAULT_SEED})")
    args = parser.parse_args(argv)
    try:
        written = write_sample_event_files(args.out, args.samples, args.schema, args.seed)
    except (SamplesError, UnknownStageError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        records = len(json.loads(path.read_text(encoding="utf-8"))["Records"])
        print(f"wrote {path} ({records} records)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
