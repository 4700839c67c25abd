# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Local end-to-end throughput against the emulator's own ceiling, measured on the same emulator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .local_pipeline import EXERCISE_TRIGGER_LIMITS, run_local_pipeline
from .source import send_receive_ceiling

# Every event makes two hops (into the features source and out of it, then into the predictions
# destination and out of it), so the fastest any pipeline can go on this emulator is the one-hop
# ceiling divided by two. The ceiling is measured on the features source's path (the source
# variant's CEILING_PATH); the destination's hop is taken to cost the same.
QUEUE_HOPS = 2


@dataclass(frozen=True)
class Throughput:
    """Messages per second through the local pipeline and through a bare send/receive loop."""

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
        """Pipeline throughput as a share of what the emulator allows a two-hop pipeline."""
        return self.pipeline_msg_per_s / self.pipeline_ceiling_msg_per_s


def measure_throughput(
    project_dir: Path, pipeline_messages: int, ceiling_messages: int, samples_path: Path | None = None
) -> Throughput:
    """Run the ceiling loop, then `make local`'s pipeline with a no-latency model, on the emulator
    AWS_ENDPOINT_URL names (the pipeline uses that emulator instead of starting its own); its
    inputs come from `samples_path` (the project's model/samples.jsonl)."""
    ceiling = send_receive_ceiling(ceiling_messages)
    summary = run_local_pipeline(
        pipeline_messages,
        seed=7,
        malformed_rate=0.0,
        project_dir=project_dir,
        samples_path=samples_path,
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
