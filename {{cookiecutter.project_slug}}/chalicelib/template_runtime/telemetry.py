# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""What the handler tells operators: one JSON object per log line, and metrics in Embedded Metric Format.

Log lines are JSON with the Lambda request id, and the record's message id and event id where a
line is about one record, so one search finds everything about an event. Feature values and
predictions are never logged unless PAYLOAD_LOG_SAMPLE_RATE is above 0: they may be personal
data.

Metrics use CloudWatch's Embedded Metric Format: one log line per batch that CloudWatch Logs turns
into metrics, with no PutMetricData call and no extra permission. Powertools for AWS Lambda does
the same, but adds 7.5 MB installed and about 30 ms of imports to every cold start (3.37.0,
measured with `pip install --target`); this module is the part the handler needs.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# The request the current invocation serves; set by the handler, read by every log line.
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

# CloudWatch keeps at most 100 values of one metric per EMF line.
MAX_VALUES_PER_METRIC = 100
# Records whose endpoint does not exist (an outage: failures.ENDPOINT_NOT_FOUND), counted on a
# line of their own by the batches that meet it; template_tools/deploy/alarms.py alarms on it.
ENDPOINT_NOT_FOUND_METRIC = "EndpointNotFound"
# Dead letters the dead-letter queue refused (their records are retried, never dropped), counted
# the same way; the stack alarms on it too.
DEAD_LETTER_REFUSED_METRIC = "DeadLetterRefused"
# The namespace when METRICS_NAMESPACE is empty (settings.py), which the stack's alarms use too.
DEFAULT_METRICS_NAMESPACE = "StreamingPredictions"


class JsonLogFormatter(logging.Formatter):
    """Formats a log record as one JSON object: time, level, logger, request id, event and fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            # Lines logged through log() carry the request id they were logged under.
            "request_id": _request_id.get(),
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def use_json_logs(level: str = "INFO") -> None:
    """Make every handler of the root logger write JSON lines (Lambda installs one of its own)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(JsonLogFormatter())
    root.setLevel(level)


def log(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log `event` with structured fields; they become keys of the JSON line."""
    logger.log(level, event, extra={"fields": {"request_id": _request_id.get(), **fields}})


class Invocation:
    """Tags the log lines of one invocation with its request id until the block ends."""

    def __init__(self, request_id: str | None) -> None:
        self._request_id = request_id
        self._token: Any = None

    def __enter__(self) -> Invocation:
        self._token = _request_id.set(self._request_id)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _request_id.reset(self._token)


class PayloadSampler:
    """Decides which predictions may be logged with their features, at the configured rate."""

    def __init__(self, rate: float, chooser: random.Random | None = None) -> None:
        if not 0 <= rate <= 1:
            raise ValueError(f"the payload sample rate must be from 0 to 1, not {rate}")
        self._rate = rate
        self._chooser = chooser or random.Random()

    def admits(self) -> bool:
        return self._rate > 0 and self._chooser.random() < self._rate


def emf_line(
    namespace: str,
    dimensions: Mapping[str, str],
    counts: Mapping[str, int],
    milliseconds: Mapping[str, list[float]],
    timestamp_ms: int | None = None,
) -> dict[str, Any]:
    """One Embedded Metric Format document: counts and millisecond values under shared dimensions."""
    values: dict[str, Any] = {name: count for name, count in counts.items()}
    values.update({name: representative_values(samples) for name, samples in milliseconds.items() if samples})
    units = {name: "Count" for name in counts} | {name: "Milliseconds" for name in milliseconds if milliseconds[name]}
    return {
        "_aws": {
            "Timestamp": timestamp_ms if timestamp_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": unit} for name, unit in units.items()],
                }
            ],
        },
        **dimensions,
        **values,
    }


def representative_values(samples: list[float], limit: int = MAX_VALUES_PER_METRIC) -> list[float]:
    """At most `limit` of the samples, rounded to 0.1 ms, that keep their distribution.

    A batch can hold thousands of records; the first hundred would be the batch's first
    records only. Evenly spaced order statistics (the minimum and maximum included) keep what
    CloudWatch's percentiles are computed from; the record count is in the Count metrics.
    """
    if len(samples) <= limit:
        return [round(value, 1) for value in samples]
    ordered = sorted(samples)
    step = (len(ordered) - 1) / (limit - 1)
    return [round(ordered[round(index * step)], 1) for index in range(limit)]


def emit_metrics(document: dict[str, Any]) -> None:
    """Write an EMF document as its own stdout line, where CloudWatch Logs extracts the metrics."""
    print(json.dumps(document, separators=(",", ":")), flush=True)
