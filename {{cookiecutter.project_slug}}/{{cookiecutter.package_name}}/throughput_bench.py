"""Local end-to-end throughput against the emulator's own ceiling, measured on the same emulator."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .local_pipeline import EXERCISE_TRIGGER_LIMITS, run_local_pipeline

CEILING_QUEUE_NAME = "benchmark-emulator-ceiling"
BATCH = 10
# Every event crosses two queues (features, then predictions), each a send/receive/delete trip,
# so the fastest any pipeline can go on this emulator is the one-queue ceiling divided by two.
QUEUE_HOPS = 2


@dataclass(frozen=True)
class Throughput:
    """Messages per second through the local pipeline and through a bare send/receive/delete loop."""

    pipeline_msg_per_s: float
    emulator_ceiling_msg_per_s: float
    pipeline_messages: int
    ceiling_messages: int
    pipeline_lost: int

    @property
    def pipeline_ceiling_msg_per_s(self) -> float:
        return self.emulator_ceiling_msg_per_s / QUEUE_HOPS

    @property
    def fraction(self) -> float:
        """Pipeline throughput as a share of what the emulator allows a two-queue pipeline."""
        return self.pipeline_msg_per_s / self.pipeline_ceiling_msg_per_s


def emulator_ceiling(sqs: Any, messages: int) -> float:
    """Messages per second of a tight SendMessageBatch/ReceiveMessage/DeleteMessageBatch loop.

    One client thread, batches of 10, and the queue never more than one batch deep, which is
    moto's best case: it scans the whole queue on every call.
    """
    queue_url = sqs.create_queue(QueueName=CEILING_QUEUE_NAME)["QueueUrl"]
    try:
        sent = received = 0
        started = time.perf_counter()
        while received < messages:
            if sent < messages and sent - received < BATCH:
                count = min(BATCH, messages - sent)
                entries = [{"Id": str(n), "MessageBody": f"ceiling-{sent + n}"} for n in range(count)]
                sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
                sent += count
            batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=BATCH).get("Messages", [])
            if batch:
                sqs.delete_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(batch)],
                )
                received += len(batch)
        return messages / (time.perf_counter() - started)
    finally:
        sqs.delete_queue(QueueUrl=queue_url)


def measure_throughput(sqs: Any, project_dir: Path, pipeline_messages: int, ceiling_messages: int) -> Throughput:
    """Run the ceiling loop, then `make local`'s pipeline with a no-latency model, on the emulator
    AWS_ENDPOINT_URL names (the pipeline uses that emulator instead of starting its own)."""
    ceiling = emulator_ceiling(sqs, ceiling_messages)
    summary = run_local_pipeline(
        pipeline_messages,
        seed=7,
        malformed_rate=0.0,
        project_dir=project_dir,
        endpoint_latency_ms=0,
        progress=None,
        trigger_limits=EXERCISE_TRIGGER_LIMITS,
    )
    return Throughput(
        pipeline_msg_per_s=summary.predictions_per_second,
        emulator_ceiling_msg_per_s=ceiling,
        pipeline_messages=summary.sent,
        ceiling_messages=ceiling_messages,
        pipeline_lost=summary.lost,
    )
