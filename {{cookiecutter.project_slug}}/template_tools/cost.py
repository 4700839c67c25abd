# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""What a million predictions cost in AWS, endpoint excluded: the arithmetic behind `make bench`'s cost table.

The benchmark measures, for each handler, what it did for a number of records (invocations,
wall time, the billing units of its publish and dead-letter calls, its log bytes); this module
turns that into money with the prices of deploy/prices.json, which the team keeps up to date.
Nothing here measures or calls AWS, so the arithmetic can be checked on fixed counts.

Billing rules applied (AWS pricing pages, as deploy/prices.json cites them):
- Lambda: one request per invocation; duration rounded up to the millisecond, times the
  configured memory in GB (1,024 MB), is the GB-seconds.
- SQS: every API call is a request, and each 64 KiB chunk of its payload is one more; Lambda's
  pollers receive (up to 10 messages a call) and delete (DeleteMessageBatch, 10 a call) on the
  account's bill. Empty receives of an idle queue are a cost per hour, not per prediction.
- SNS: each 64 KiB chunk of a Publish or PublishBatch payload is one request.
- Kinesis on demand: data in and data out per GB, each record rounded up to 1 KiB.
- DynamoDB on demand: one write request unit per started KiB of the item.
- CloudWatch Logs: ingestion per GB, each event's bytes plus 26 bytes; Lambda itself writes a
  START, END and REPORT line per invocation.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from .stage import PROJECT_DIR

PRICES_FILE = PROJECT_DIR / "deploy" / "prices.json"
SQS_CHUNK_BYTES = 64 * 1024
KIB = 1024
GIB = 1024**3
# CloudWatch Logs bills each event's message bytes plus this much.
LOG_EVENT_OVERHEAD_BYTES = 26
# SQS ReceiveMessage and DeleteMessageBatch take at most this many messages a call.
SQS_MESSAGES_PER_CALL = 10
# Lambda's own lines per invocation, as it writes them (the request id is a UUID).
_REQUEST_ID = "00000000-0000-0000-0000-000000000000"
PLATFORM_LOG_LINES = (
    f"START RequestId: {_REQUEST_ID} Version: $LATEST",
    f"END RequestId: {_REQUEST_ID}",
    f"REPORT RequestId: {_REQUEST_ID}\tDuration: 63.12 ms\tBilled Duration: 64 ms\tMemory Size: 512 MB\t"
    "Max Memory Used: 90 MB\t",
)
PLATFORM_LOG_BYTES_PER_INVOCATION = sum(len(line) + 1 + LOG_EVENT_OVERHEAD_BYTES for line in PLATFORM_LOG_LINES)

ROWS = (
    ("lambda_requests", "Lambda requests"),
    ("lambda_gb_seconds", "Lambda GB-seconds"),
    ("source_requests", "source requests"),
    ("destination_requests", "destination requests"),
    ("dead_letter_requests", "dead-letter requests"),
    ("log_bytes", "CloudWatch log bytes (ingested)"),
)
MILLION = 1_000_000


class PriceError(ValueError):
    """deploy/prices.json is missing a price the project's pipeline needs, or is malformed."""


@dataclass(frozen=True)
class Price:
    """One price from deploy/prices.json, with where and when it was read."""

    usd: float
    unit: str
    region: str
    date: str
    source: str


def load_prices(path: Path = PRICES_FILE) -> dict[str, Price]:
    """The prices of `path`: {"prices": {name: {"usd", "unit", "region", "date", "source"}}}."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        return {name: Price(**entry) for name, entry in document["prices"].items()}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PriceError(f"{path}: {error}") from error


@dataclass(frozen=True)
class Pipeline:
    """What decides the bill apart from the handler: the source, destination, memory and batch size."""

    source: str  # "sqs", "sqs-fifo" or "kinesis"
    destination: str  # "sqs", "sns", "kinesis" or "dynamodb"
    memory_mb: int
    batch_size: int
    destination_fifo: bool = False

    @classmethod
    def from_environment(cls, environment: Mapping[str, str], memory_mb: int, batch_size: int) -> Pipeline:
        """The stage's resource variables name the source and destination kinds."""
        if environment.get("FEATURES_STREAM_NAME"):
            source = "kinesis"
        elif environment.get("FEATURES_QUEUE_NAME", "").endswith(".fifo"):
            source = "sqs-fifo"
        else:
            source = "sqs"
        variables = {
            "PREDICTIONS_QUEUE_NAME": "sqs",
            "PREDICTIONS_TOPIC_NAME": "sns",
            "PREDICTIONS_STREAM_NAME": "kinesis",
            "PREDICTIONS_TABLE_NAME": "dynamodb",
        }
        destination = next((kind for name, kind in variables.items() if environment.get(name)), "sqs")
        fifo = environment.get("PREDICTIONS_QUEUE_NAME", "").endswith(".fifo")
        return cls(source, destination, memory_mb, batch_size, destination_fifo=fifo)

    @property
    def dead_letter_fifo(self) -> bool:
        # The dead-letter queue is of the source queue's type (a Kinesis project's is standard).
        return self.source == "sqs-fifo"


@dataclass(frozen=True)
class HandlerUsage:
    """What one handler measured for `records` predictions, at the pipeline's batch size."""

    records: int
    wall_ms_per_invocation: float
    # Mean bytes of one source record's body (SQS receive chunks, Kinesis data out).
    source_record_bytes: float
    # Billing units of the destination's publish calls: 64 KiB chunks (SQS, SNS), write request
    # units (DynamoDB) or KiB of records (Kinesis).
    destination_units: float
    # 64 KiB chunks of the dead-letter queue's sends.
    dead_letter_units: float
    # The handler's own log and metric lines: bytes (newlines included) and count.
    log_bytes: float
    log_events: float


def request_billing_units(service: str, operation: str, body: Any) -> float:
    """The billing units of one API call from its serialized request body (botocore's request_dict["body"]).

    SQS and SNS: 64 KiB chunks (at least one). DynamoDB writes: started KiB of the request, an
    upper bound of the item's write units. Kinesis puts: started KiB of each record (data and
    partition key), as on-demand streams bill data in. Anything else: one.
    """
    if service in ("sqs", "sns"):
        return max(1, math.ceil(_body_size(body) / SQS_CHUNK_BYTES))
    if service == "dynamodb" and operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return max(1, math.ceil(_body_size(body) / KIB))
    if service == "kinesis" and operation in ("PutRecord", "PutRecords"):
        document = json.loads(body) if isinstance(body, (bytes, str)) and body else {}
        records = document.get("Records", [document])
        return sum(_kinesis_record_kib(record) for record in records)
    return 1


def _kinesis_record_kib(record: Mapping[str, Any]) -> int:
    data = base64.b64decode(record.get("Data", ""))
    return max(1, math.ceil((len(data) + len(record.get("PartitionKey", "").encode("utf-8"))) / KIB))


def _body_size(body: Any) -> int:
    if isinstance(body, bytes):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8"))
    if isinstance(body, Mapping):
        return len(urlencode(body, doseq=True))
    return 0


def usage_per_million(usage: HandlerUsage, pipeline: Pipeline) -> dict[str, float]:
    """The billed quantity of each row for a million predictions (the row's unit in `row_units`)."""
    scale = MILLION / usage.records
    invocations = MILLION / pipeline.batch_size
    billed_seconds = math.ceil(usage.wall_ms_per_invocation) / 1000
    log_bytes = (usage.log_bytes + usage.log_events * LOG_EVENT_OVERHEAD_BYTES) * scale
    return {
        "lambda_requests": invocations,
        "lambda_gb_seconds": invocations * billed_seconds * pipeline.memory_mb / 1024,
        "source_requests": _source_quantity(usage, pipeline, invocations),
        "destination_requests": usage.destination_units * scale,
        "dead_letter_requests": usage.dead_letter_units * scale,
        "log_bytes": log_bytes + invocations * PLATFORM_LOG_BYTES_PER_INVOCATION,
    }


def _source_quantity(usage: HandlerUsage, pipeline: Pipeline, invocations: float) -> float:
    if pipeline.source == "kinesis":
        # Bytes read by the trigger (on demand: data out per GB, each record a started KiB).
        return MILLION * math.ceil(usage.source_record_bytes / KIB) * KIB
    # Per batch: the receives (10 messages a call, plus a request per further 64 KiB chunk) and
    # the DeleteMessageBatch calls that follow a success.
    calls = math.ceil(pipeline.batch_size / SQS_MESSAGES_PER_CALL)
    receive_chunks = max(calls, math.ceil(pipeline.batch_size * usage.source_record_bytes / SQS_CHUNK_BYTES))
    return invocations * (receive_chunks + calls)


def row_prices(pipeline: Pipeline) -> dict[str, tuple[str, float]]:
    """Each row's price name in deploy/prices.json and how many of the row's units that price is for."""
    sqs = "sqs_fifo_request" if pipeline.source == "sqs-fifo" else "sqs_request"
    destination = {
        "sqs": ("sqs_fifo_request" if pipeline.destination_fifo else "sqs_request", 1),
        "sns": ("sns_request", 1),
        "kinesis": ("kinesis_on_demand_gb_in", GIB / KIB),
        "dynamodb": ("dynamodb_on_demand_write_request_unit", 1),
    }[pipeline.destination]
    return {
        "lambda_requests": ("lambda_request", 1),
        "lambda_gb_seconds": ("lambda_gb_second", 1),
        "source_requests": ("kinesis_on_demand_gb_out", GIB) if pipeline.source == "kinesis" else (sqs, 1),
        "destination_requests": destination,
        "dead_letter_requests": ("sqs_fifo_request" if pipeline.dead_letter_fifo else "sqs_request", 1),
        "log_bytes": ("cloudwatch_logs_ingested_gb", GIB),
    }


def row_units(pipeline: Pipeline) -> dict[str, str]:
    """What a row's quantity counts."""
    return {
        "lambda_requests": "invocations",
        "lambda_gb_seconds": "GB-seconds",
        "source_requests": "bytes read" if pipeline.source == "kinesis" else "requests",
        "destination_requests": {
            "sqs": "requests",
            "sns": "requests",
            "kinesis": "KiB written",
            "dynamodb": "write request units",
        }[pipeline.destination],
        "dead_letter_requests": "requests",
        "log_bytes": "bytes",
    }


def cost_per_million(
    usages: Mapping[str, HandlerUsage], pipeline: Pipeline, prices: Mapping[str, Price]
) -> dict[str, Any]:
    """The cost table: for each row and handler the quantity and USD per million predictions, and totals."""
    pricing = row_prices(pipeline)
    missing = sorted({name for name, _ in pricing.values()} - set(prices))
    if missing:
        raise PriceError(f"deploy/prices.json has no price for {', '.join(missing)}")
    units = row_units(pipeline)
    rows: dict[str, dict[str, Any]] = {}
    totals = dict.fromkeys(usages, 0.0)
    quantities = {handler: usage_per_million(usage, pipeline) for handler, usage in usages.items()}
    for row, _label in ROWS:
        price_name, per = pricing[row]
        cells = {}
        for handler in usages:
            quantity = quantities[handler][row]
            usd = quantity / per * prices[price_name].usd
            totals[handler] += usd
            cells[handler] = {"quantity": round(quantity, 3), "usd": round(usd, 6)}
        rows[row] = {"unit": units[row], "price": price_name, **cells}
    used = {name for name, _ in pricing.values()}
    return {
        "currency": "USD",
        "source": pipeline.source,
        "destination": pipeline.destination,
        "memory_mb": pipeline.memory_mb,
        "batch_size": pipeline.batch_size,
        "rows": rows,
        "total": {handler: round(usd, 6) for handler, usd in totals.items()},
        "prices": {
            name: {"usd": price.usd, "unit": price.unit, "region": price.region, "date": price.date}
            for name, price in sorted(prices.items())
            if name in used
        },
    }


# vCPUs of common SageMaker instance types: a framework container starts one model server
# worker per vCPU, so an instance serves that many of the benchmark's one-worker rate.
INSTANCE_VCPUS = {
    "ml.t2.medium": 2,
    "ml.m5.large": 2,
    "ml.m5.xlarge": 4,
    "ml.m5.2xlarge": 8,
    "ml.c5.large": 2,
    "ml.c5.xlarge": 4,
    "ml.c5.2xlarge": 8,
    "ml.m6i.large": 2,
    "ml.c6i.large": 2,
}


def instance_hours_per_million(predictions_per_second: float, instance_type: str) -> float | None:
    """Instance-hours a million predictions keep the endpoint busy, at one worker per vCPU; None if unknown."""
    workers = INSTANCE_VCPUS.get(instance_type)
    if not workers or predictions_per_second <= 0:
        return None
    return MILLION / (predictions_per_second * workers) / 3600
