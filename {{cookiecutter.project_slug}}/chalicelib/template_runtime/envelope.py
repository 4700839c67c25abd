# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The prediction envelope: the stable contract every consumer of the predictions reads.

Its JSON Schema is schemas/prediction-envelope.schema.json; change both together and raise
SCHEMA_VERSION when a field changes meaning or goes away. The team's own fields
(extension_points.extra_envelope_fields) go under "extra", left out when there are none, so they
can never change a field of the contract.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from chalicelib import extension_points

from .endpoint import Prediction
from .feature_events import ExtensionPointError, FeatureEvent, event_moment
from .redelivery import iso_time

SCHEMA_VERSION = "1.0"
# The envelope's field holding the team's extra fields.
EXTRA_FIELD = "extra"


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
    envelope = {
        "schema_version": SCHEMA_VERSION,
        "prediction": prediction.output,
        # The id of the delivery this prediction came from; a redrive or replay sends a copy
        # with an id of its own.
        "message_id": event.message_id,
        # The event's id on every copy, redriven and replayed ones too, so consumers drop
        # duplicates on it (see "Delivery guarantees" in the README).
        "event_id": event.event_id,
        "endpoint_name": endpoint_name,
        "endpoint_variant": prediction.variant,
        "model_version": model_version,
        "event_time": event.event_time or (iso_time(happened_at) if happened_at else None),
        "prediction_time": iso_time(predicted_at),
        "latency_ms": latency_ms,
        "endpoint_latency_ms": round(prediction.endpoint_latency_ms, 1),
    }
    extra = team_fields(event, prediction, reserved=envelope.keys())
    if extra:
        envelope[EXTRA_FIELD] = extra
    return envelope


def team_fields(event: FeatureEvent, prediction: Prediction, reserved: Iterable[str]) -> dict[str, Any]:
    """The team's extra fields for this prediction; ExtensionPointError if they are unusable.

    A name of the envelope's own is refused even though the fields travel apart, under "extra":
    a consumer could read one for the other.
    """
    try:
        extra = extension_points.extra_envelope_fields(event.features, prediction.output)
    except Exception as error:  # noqa: BLE001 - team code: whatever it raises fails this record alone
        raise ExtensionPointError.raised("extra_envelope_fields", error) from error
    if not isinstance(extra, dict):
        raise ExtensionPointError.returned("extra_envelope_fields", f"returned {type(extra).__name__}, not a dict")
    if not extra:
        return extra
    if names := sorted(str(name) for name in extra if not isinstance(name, str)):
        raise ExtensionPointError.returned("extra_envelope_fields", f"returned names that are not strings: {names}")
    if clashes := sorted(set(extra) & (set(reserved) | {EXTRA_FIELD})):
        raise ExtensionPointError.returned(
            "extra_envelope_fields", f"returned {clashes}: the envelope's own field names, which it keeps for itself"
        )
    return extra


def encode_envelope(envelope: dict[str, Any]) -> str:
    """The envelope as JSON text; ExtensionPointError when the team's extra fields cannot be JSON."""
    try:
        return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError) as error:
        # Every other field is a string, a number or the prediction parsed from the endpoint's JSON.
        problem = f"returned a value JSON cannot hold: {error}"
        raise ExtensionPointError.returned("extra_envelope_fields", problem) from error
