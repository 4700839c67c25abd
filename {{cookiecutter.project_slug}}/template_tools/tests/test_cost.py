# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""The cost table's arithmetic on fixed counts, against figures worked out by hand in each docstring."""

import base64
import json

import pytest

from template_tools.cost import (
    PLATFORM_LOG_BYTES_PER_INVOCATION,
    PRICES_FILE,
    HandlerUsage,
    Pipeline,
    Price,
    PriceError,
    cost_per_million,
    instance_hours_per_million,
    load_prices,
    request_billing_units,
    row_prices,
)

GIB = 1024**3


def price(usd):
    return Price(usd=usd, unit="test", region="us-east-1", date="2026-12-03", source="https://example.invalid")


PRICES = {
    "lambda_request": price(0.20 / 1e6),
    "lambda_gb_second": price(0.0000166667),
    "sqs_request": price(0.40 / 1e6),
    "sqs_fifo_request": price(0.50 / 1e6),
    "sns_request": price(0.50 / 1e6),
    "kinesis_on_demand_gb_in": price(0.08),
    "kinesis_on_demand_gb_out": price(0.04),
    "dynamodb_on_demand_write_request_unit": price(0.625 / 1e6),
    "cloudwatch_logs_ingested_gb": price(0.50),
}

# 100 records in 10 batches of 10: 62.2 ms a batch, 200-byte bodies, 10 SendMessageBatch
# chunks, no dead letters, 30,000 log bytes in 100 lines.
BATCH = HandlerUsage(
    records=100,
    wall_ms_per_invocation=62.2,
    source_record_bytes=200,
    destination_units=10,
    dead_letter_units=0,
    log_bytes=30_000,
    log_events=100,
)
SQS_TO_SQS = Pipeline(source="sqs", destination="sqs", memory_mb=512, batch_size=10)


def test_lambdas_own_lines_cost_342_bytes_an_invocation():
    """START (70 characters) + END (51) + REPORT (140), each with a newline and CloudWatch's 26 bytes."""
    assert PLATFORM_LOG_BYTES_PER_INVOCATION == (70 + 1 + 26) + (51 + 1 + 26) + (140 + 1 + 26) == 342


def test_every_row_of_an_sqs_to_sqs_pipeline_against_the_hand_worked_figures():
    """A million predictions in batches of 10 is 100,000 invocations:
    - requests: 100,000 x $0.20/M = $0.02;
    - duration: 62.2 ms bills as 63 ms; 100,000 x 0.063 s x 0.5 GB = 3,150 GB-s x $0.0000166667 = $0.0525;
    - source: a receive (2,000 bytes: one 64 KiB chunk) and a DeleteMessageBatch per batch, 200,000 x $0.40/M = $0.08;
    - destination: 10 chunks per 100 records, 100,000 x $0.40/M = $0.04;
    - logs: (30,000 + 100 x 26) x 10,000 = 326,000,000 bytes, plus 100,000 x 342 = 34,200,000 of Lambda's own,
      360,200,000 / 2^30 x $0.50 = $0.167731."""
    table = cost_per_million({"batch": BATCH}, SQS_TO_SQS, PRICES)
    rows = table["rows"]
    assert rows["lambda_requests"]["batch"] == {"quantity": 100_000, "usd": pytest.approx(0.02)}
    assert rows["lambda_gb_seconds"]["batch"]["quantity"] == pytest.approx(3_150)
    assert rows["lambda_gb_seconds"]["batch"]["usd"] == pytest.approx(0.0525, abs=1e-6)
    assert rows["source_requests"]["batch"] == {"quantity": 200_000, "usd": pytest.approx(0.08)}
    assert rows["destination_requests"]["batch"] == {"quantity": 100_000, "usd": pytest.approx(0.04)}
    assert rows["dead_letter_requests"]["batch"] == {"quantity": 0, "usd": 0}
    assert rows["log_bytes"]["batch"]["quantity"] == 360_200_000
    assert rows["log_bytes"]["batch"]["usd"] == pytest.approx(0.167731, abs=1e-6)
    assert table["total"]["batch"] == pytest.approx(0.02 + 0.0525 + 0.08 + 0.04 + 0.167731, abs=1e-5)
    assert table["batch_size"] == 10 and table["memory_mb"] == 512


def test_the_handlers_are_priced_side_by_side_and_only_their_counts_differ():
    """A naive handler: 681.2 ms a batch (682 ms billed: 100,000 x 0.682 x 0.5 = 34,100 GB-s = $0.568334),
    100 SendMessage calls per 100 records ($0.40) and Lambda's lines only (34,200,000 bytes = $0.015926)."""
    naive = HandlerUsage(100, 681.2, 200, destination_units=100, dead_letter_units=0, log_bytes=0, log_events=0)
    table = cost_per_million({"batch": BATCH, "naive": naive}, SQS_TO_SQS, PRICES)
    assert table["rows"]["lambda_gb_seconds"]["naive"]["usd"] == pytest.approx(0.568334, abs=1e-6)
    assert table["rows"]["destination_requests"]["naive"]["usd"] == pytest.approx(0.40)
    assert table["rows"]["log_bytes"]["naive"]["usd"] == pytest.approx(0.015926, abs=1e-6)
    assert table["rows"]["source_requests"]["naive"] == table["rows"]["source_requests"]["batch"]
    assert table["total"]["naive"] == pytest.approx(0.02 + 0.568335 + 0.08 + 0.40 + 0.015926, abs=1e-5)


def test_large_bodies_bill_a_receive_per_64_kib_chunk_and_fifo_queues_their_own_price():
    """10 bodies of 10,000 bytes: 100,000 bytes is two 64 KiB chunks, plus the delete: 3 requests a batch,
    300,000 per million at the FIFO price of $0.50/M = $0.15; dead letters go to a FIFO queue too."""
    big = HandlerUsage(100, 62.2, 10_000, destination_units=10, dead_letter_units=1, log_bytes=0, log_events=0)
    fifo = Pipeline(source="sqs-fifo", destination="sqs", memory_mb=512, batch_size=10, destination_fifo=True)
    rows = cost_per_million({"batch": big}, fifo, PRICES)["rows"]
    assert rows["source_requests"]["batch"] == {"quantity": 300_000, "usd": pytest.approx(0.15)}
    assert rows["destination_requests"]["batch"]["usd"] == pytest.approx(0.05)
    assert rows["dead_letter_requests"]["batch"] == {"quantity": 10_000, "usd": pytest.approx(0.005)}


def test_a_kinesis_pipeline_pays_per_started_kib_read_and_written():
    """Kinesis on demand: a 200-byte record is read as 1 KiB, 1,024,000,000 bytes per million,
    / 2^30 x $0.04 = $0.038147; 1,000 KiB written per 100 records is 10,000,000 KiB per million,
    x 1,024 / 2^30 x $0.08 = $0.762939."""
    usage = HandlerUsage(100, 62.2, 200, destination_units=1_000, dead_letter_units=0, log_bytes=0, log_events=0)
    pipeline = Pipeline(source="kinesis", destination="kinesis", memory_mb=512, batch_size=10)
    rows = cost_per_million({"batch": usage}, pipeline, PRICES)["rows"]
    assert rows["source_requests"]["batch"]["quantity"] == 1_024_000_000
    assert rows["source_requests"]["batch"]["usd"] == pytest.approx(0.038147, abs=1e-6)
    assert rows["destination_requests"]["batch"]["usd"] == pytest.approx(0.762939, abs=1e-6)


def test_batches_above_ten_receive_and_delete_ten_messages_a_call():
    """A batch of 100 (with a batching window) is 10 receives and 10 DeleteMessageBatch calls:
    10,000 invocations x 20 = 200,000 requests, and Lambda's requests fall to 10,000 ($0.002)."""
    pipeline = Pipeline(source="sqs", destination="sqs", memory_mb=1024, batch_size=100)
    rows = cost_per_million({"batch": BATCH}, pipeline, PRICES)["rows"]
    assert rows["source_requests"]["batch"]["quantity"] == 200_000
    assert rows["lambda_requests"]["batch"] == {"quantity": 10_000, "usd": pytest.approx(0.002)}
    # 63 ms billed at 1 GB: 10,000 x 0.063 = 630 GB-s.
    assert rows["lambda_gb_seconds"]["batch"]["quantity"] == pytest.approx(630)


def test_billing_units_of_a_request_come_from_its_body():
    assert request_billing_units("sqs", "SendMessageBatch", b"x" * 65_536) == 1
    assert request_billing_units("sqs", "SendMessageBatch", b"x" * 65_537) == 2
    assert request_billing_units("sns", "Publish", {"Message": "x" * 70_000}) == 2
    assert request_billing_units("dynamodb", "PutItem", b"x" * 1_500) == 2
    # A Kinesis record bills its data and partition key by the started KiB: 1,000 + 30 bytes is 2 KiB.
    records = [{"Data": base64.b64encode(b"y" * 1_000).decode(), "PartitionKey": "k" * 30}] * 3
    assert request_billing_units("kinesis", "PutRecords", json.dumps({"Records": records}).encode()) == 6
    assert request_billing_units("sagemaker-runtime", "InvokeEndpoint", b"{}") == 1


def test_a_missing_price_is_named_rather_than_priced_at_zero():
    prices = {name: value for name, value in PRICES.items() if name != "sns_request"}
    pipeline = Pipeline(source="sqs", destination="sns", memory_mb=512, batch_size=10)
    with pytest.raises(PriceError, match="sns_request"):
        cost_per_million({"batch": BATCH}, pipeline, prices)


@pytest.mark.parametrize("source", ["sqs", "sqs-fifo", "kinesis"])
@pytest.mark.parametrize("destination", ["sqs", "sns", "kinesis", "dynamodb"])
def test_the_shipped_price_file_prices_every_source_and_destination(source, destination):
    prices = load_prices(PRICES_FILE)
    needed = {name for name, _ in row_prices(Pipeline(source, destination, 512, 10, destination_fifo=True)).values()}
    assert needed <= set(prices)
    assert all(entry.region and entry.date and entry.source.startswith("https://") for entry in prices.values())


def test_instance_hours_per_million_assume_one_worker_per_vcpu():
    """1,000 predictions/s on one worker; an ml.m5.large's 2 vCPUs serve 2,000/s: 1e6 / 2,000 / 3,600 = 0.1389 h."""
    assert instance_hours_per_million(1_000, "ml.m5.large") == pytest.approx(0.138889, abs=1e-6)
    assert instance_hours_per_million(1_000, "ml.unknown.large") is None
