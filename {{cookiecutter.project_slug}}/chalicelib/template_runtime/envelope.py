# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The prediction envelope: the stable contract every consumer of the predictions reads.

Its JSON Schema is schemas/prediction-envelope.schema.json; change both together and raise
SCHEMA_VERSION when a field changes meaning or goes away.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from .endpoint import Prediction
from .feature_events import FeatureEvent

SCHEMA_VERSION = "1.0"


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_moment(event: FeatureEvent) -> datetime | None:
    """When the event happened: its own event time, else when SQS accepted it."""
    if event.event_time is not None:
        moment = datetime.fromisoformat(event.event_time)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if event.sent_timestamp_ms is not None:
        return datetime.fromtimestamp(event.sent_timestamp_ms / 1000, tz=UTC)
    return None


def build_envelope(
    event: FeatureEvent,
    prediction: Prediction,
    endpoint_name: str,
    model_version: str,
    predicted_at: datetime,
) -> dict[str, Any]:
    """Wrap one prediction with what a consumer needs to trust, order and de-duplicate it."""
    happened_at = event_moment(event)
    latency_ms = None if happened_at is None else round((predicted_at - happened_at).total_seconds() * 1000, 1)
    return {
        "schema_version": SCHEMA_VERSION,
        "prediction": prediction.output,
        # The features message id is the same on every delivery of a record, so consumers
        # drop duplicates on it (see "Delivery guarantees" in the README).
        "message_id": event.message_id,
        "event_id": event.event_id,
        "endpoint_name": endpoint_name,
        "endpoint_variant": prediction.variant,
        "model_version": model_version,
        "event_time": event.event_time or (_iso(happened_at) if happened_at else None),
        "prediction_time": _iso(predicted_at),
        "latency_ms": latency_ms,
        "endpoint_latency_ms": round(prediction.endpoint_latency_ms, 1),
    }


def encode_envelope(envelope: dict[str, Any]) -> str:
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
