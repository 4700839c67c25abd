# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make bench`: the handler's batch and per-record modes against a naive baseline, in one run.

    python -m template_tools.benchmark [--latency-ms 50] [--out bench] [--file events.jsonl]

The handlers are fed model inputs from model/samples.jsonl, or from `--file` (JSON Lines of the
team's own events: model inputs or envelopes, whose `features` is taken), served by the model in
model/.

Prints a table with the targets, writes <out>/results.json and <out>/latency.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from .api_call_counter import ApiCallCounter
from .benchmark_report import HANDLER_LABELS, judge, plot_latency, render_cost_table, render_table, write_json
from .cost import PRICES_FILE, Pipeline, PriceError, cost_per_million, instance_hours_per_million, load_prices
from .deployment_footprint import build_package, measure_cold_start, unpack
from .destination import DESTINATION_LABEL, PUBLISH_API, PredictionReader, create_destination
from .emulator import REGION, Redelivery, local_aws_environment
from .endpoint_capacity import capacity_records, measure_worker_rate
from .endpoint_process import EndpointProcess
from .handler_bench import (
    HANDLERS,
    PER_RECORD_CONCURRENCY,
    RECORDS_PER_CALL,
    REFERENCE_BATCH_SIZE,
    HandlerBench,
    HandlerFigures,
)
from .lambda_trigger import FunctionConfiguration
from .local_pipeline import cold_started_handler, handler_log, model_input_schema_path
from .model_samples import SamplesError, load_samples
from .source import CEILING_PATH, SOURCE_LABEL, create_source
from .stage import PROJECT_DIR, load_stage, patched_environ, stage_environment
from .throughput_bench import QUEUE_HOPS, measure_throughput

METHOD = """\
How these figures are made (one process drives the handlers; moto and the endpoint run in
child processes so their CPU is not the handler's):
- wall per batch: app.handle_feature_events(event, context) called directly with Lambda events
  as the {source} delivers them, dev stage environment, predictions
  to the {destination}, endpoint server with --latency-ms {latency} and the real model;
  median of up to {repeats} invocations per batch size after one warm-up invocation.
  Per-record mode is RECORDS_PER_ENDPOINT_CALL=1 with ENDPOINT_CONCURRENCY={per_record_concurrency},
  batch mode 100 with ENDPOINT_CONCURRENCY={concurrency}.
- API calls: botocore before-call hooks on the handlers' boto3 session, warm invocations of
  {reference} records (a cold start adds the lookups of queue URLs or the topic ARN, once per
  process). Publish calls are the destination's and the dead-letter queue's sends, batched or
  not ({publish_api} here).
- handler CPU: time.process_time() around each handler call (all its threads), endpoint at
  0 ms latency in its own process, so the figure is parsing, envelopes, JSON and botocore work.
  The target checks it as a share of the naive handler's in the same run, since a machine's
  speed moves both alike.
- cold start: median over {cold_repetitions} pairs of fresh interpreters run in the unpacked
  `chalice package` zip with -B (Lambda compiles the package's .py files on every cold start):
  `import app` plus the first batch_processor() (client creation), against `import boto3` plus
  two clients; the range is the lowest and highest ratio of one pair.
- cost per million predictions: the wall time, publish and dead-letter calls (in billing units
  read from each request body) and log bytes measured at the trigger's batch size of
  {cost_batch_size}, priced with {prices}. Lambda's own START/END/REPORT lines are added per
  invocation; the source's receive and delete calls are the trigger's, counted from the batch
  size and the records' bytes. Wall time is this machine's: at {memory_mb} MB Lambda gives the
  function {vcpu_share:.2f} of a vCPU, so CPU-bound time stretches there.
- endpoint capacity: one model worker at 0 ms latency, calls sent one at a time, {capacity_records}
  records (again until a second has passed) in calls of {batch_records} and of 1; instance-hours
  assume one worker per vCPU, and this machine's CPU is not the instance's.
- local throughput: run_local_pipeline (what `make local` runs) with a 0 ms model, predictions
  per second, against half the ceiling of one hop on the same emulator, a one-thread loop on a
  shallow {ceiling_path}
  (each event makes two hops; the destination's is taken to cost the same)."""


# Lambda gives a function one full vCPU at 1,769 MB, and CPU in proportion below that.
LAMBDA_MB_PER_VCPU = 1769

# The services the benchmark's pipeline uses, whose own endpoint variables would take them
# away from the benchmark's emulator.
EMULATED_SERVICES = ("SQS", "SNS", "KINESIS", "DYNAMODB", "DYNAMODB_STREAMS", "STS")


@dataclass(frozen=True)
class BenchOptions:
    """What to measure and how much of it."""

    latency_ms: int = 50
    out: Path = Path("bench")
    batch_sizes: tuple[int, ...] = (1, 10, 25, 50, 100)
    max_repeats: int = 5
    cpu_invocations: int = 20
    # At least 9: a median over fewer pairs moved by a third between runs on a loaded machine.
    cold_start_repetitions: int = 9
    capacity_records: int = 1000
    pipeline_messages: int = 1000
    ceiling_messages: int = 1000
    endpoint_concurrency: int | None = None
    stage: str = "dev"
    project_dir: Path = PROJECT_DIR
    plot: bool = True
    # The model inputs to send; None: the project's model/samples.jsonl.
    file: Path | None = None
    # The price file; None: the project's deploy/prices.json (the template's when it has none).
    prices: Path | None = None

    @property
    def samples_path(self) -> Path:
        return self.file or self.project_dir / "model" / "samples.jsonl"

    @property
    def prices_path(self) -> Path:
        own = self.project_dir / "deploy" / "prices.json"
        return self.prices or (own if own.exists() else PRICES_FILE)

    @property
    def deploy_config_path(self) -> Path:
        own = self.project_dir / "deploy" / "config.json"
        return own if own.exists() else PROJECT_DIR / "deploy" / "config.json"

    def repeats(self, batch_size: int) -> int:
        # About 100 records per batch size, so the naive baseline's slow large batches stay short.
        return max(1, min(self.max_repeats, 100 // batch_size))


class Progress:
    """One line per stage on stderr, with the seconds since the benchmark started."""

    def __init__(self, stream: TextIO | None) -> None:
        self._stream = stream
        self._started = time.monotonic()

    def __call__(self, message: str) -> None:
        if self._stream is not None:
            self._stream.write(f"[{time.monotonic() - self._started:6.1f}s] {message}\n")
            self._stream.flush()


def run_benchmark(options: BenchOptions, progress: Progress, log_path: Path | None = None) -> dict[str, Any]:
    """Measure everything; return the results as the JSON document results.json holds.

    `log_path` is the file the handlers' log lines go to (handler_log), whose growth the cost
    table prices as CloudWatch Logs ingestion."""
    if REFERENCE_BATCH_SIZE not in options.batch_sizes:
        raise ValueError(f"--batch-sizes must include {REFERENCE_BATCH_SIZE}")
    stage = load_stage(options.stage, options.project_dir)
    prices = load_prices(options.prices_path)
    results: dict[str, Any] = {
        "endpoint_latency_ms": options.latency_ms,
        "batch_sizes": list(options.batch_sizes),
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
    }
    with stage_environment(stage), patched_environ(_fixed_environment(options)):
        results["endpoint_concurrency"] = int(os.environ.get("ENDPOINT_CONCURRENCY") or 4)
        pipeline = Pipeline.from_environment(os.environ, stage.lambda_memory_size, _trigger_batch_size())
        # The cost table is priced at the trigger's own batch size, so it is measured too.
        options = replace(options, batch_sizes=tuple(sorted({*options.batch_sizes, pipeline.batch_size})))
        results["batch_sizes"] = list(options.batch_sizes)
        results.update(_footprint(options, progress))
        with (
            local_aws_environment() as emulator_url,
            EndpointProcess(options.project_dir / "model", options.latency_ms) as slow_endpoint,
            EndpointProcess(options.project_dir / "model", 0) as fast_endpoint,
        ):
            progress(f"moto server at {emulator_url}; endpoints at {slow_endpoint.url} and {fast_endpoint.url}")
            # The benchmark's own clients are made before the counter is attached, so the counter
            # sees only the handlers' calls.
            features = create_source(stage.environment_variables, Redelivery())
            create_destination(stage.environment_variables)
            predictions = PredictionReader(stage.environment_variables)
            function = FunctionConfiguration(stage.function_name, stage.lambda_timeout, stage.lambda_memory_size)
            with ApiCallCounter() as counter, cold_started_handler(options.project_dir) as app:
                bench = HandlerBench(
                    app,
                    predictions,
                    features.arn,
                    function,
                    counter,
                    per_record_concurrency=str(options.endpoint_concurrency or PER_RECORD_CONCURRENCY),
                    samples_path=options.samples_path,
                    log_path=log_path,
                )
                figures = _handler_figures(
                    bench, options, slow_endpoint.url, fast_endpoint.url, progress, pipeline.batch_size
                )
                app.batch_processor.cache_clear()
            results.update(_handler_results(figures, options.latency_ms))
            results["cost_per_million"] = _cost(figures, pipeline, prices, options)
            results["endpoint_capacity"] = _capacity(options, bench.bodies, fast_endpoint.url, prices, progress)
            results.update(_throughput(options, progress))
    return results


def _trigger_batch_size() -> int:
    try:
        return max(1, int(os.environ.get("TRIGGER_BATCH_SIZE") or REFERENCE_BATCH_SIZE))
    except ValueError:
        return REFERENCE_BATCH_SIZE


def _cost(
    figures: dict[str, HandlerFigures], pipeline: Pipeline, prices: dict[str, Any], options: BenchOptions
) -> dict[str, Any]:
    usages = {name: figure.usage for name, figure in figures.items() if figure.usage is not None}
    table = cost_per_million(usages, pipeline, prices)
    table["endpoint_latency_ms"] = options.latency_ms
    table["prices_file"] = str(options.prices_path)
    table["wall_ms_per_invocation"] = {name: round(usage.wall_ms_per_invocation, 1) for name, usage in usages.items()}
    # GB-seconds per million predictions at each measured batch size: what the batch size does
    # to the largest Lambda row (the other rows follow the calls, which the batch size divides).
    table["lambda_gb_seconds_by_batch_size"] = {
        name: {
            str(size): round(1_000_000 / size * math.ceil(ms) / 1000 * pipeline.memory_mb / 1024, 1)
            for size, ms in figure.latency_ms_by_batch_size.items()
        }
        for name, figure in figures.items()
    }
    return table


def _capacity(
    options: BenchOptions, bodies: Sequence[str], endpoint_url: str, prices: dict[str, Any], progress: Progress
) -> dict[str, Any]:
    content_type = os.environ.get("ENDPOINT_CONTENT_TYPE") or "application/json"
    batch_records = int(RECORDS_PER_CALL["batch"])
    progress(
        f"endpoint capacity: {options.capacity_records} records to one worker at 0 ms, "
        f"{batch_records} a call, then 1 a call"
    )
    records = capacity_records(bodies, options.capacity_records)
    rates = {
        "batch": measure_worker_rate(endpoint_url, records, batch_records, content_type),
        "per_record": measure_worker_rate(endpoint_url, records, 1, content_type),
    }
    instance_type = _instance_type(options.deploy_config_path)
    price = prices.get(f"sagemaker_instance_hour:{instance_type}")
    capacity: dict[str, Any] = {"instance_type": instance_type, "content_type": content_type}
    for name, rate in rates.items():
        hours = instance_hours_per_million(rate.predictions_per_second, instance_type)
        capacity[name] = {
            "records_per_call": rate.records_per_call,
            "predictions_per_second": round(rate.predictions_per_second, 1),
            "instance_hours_per_million": None if hours is None else round(hours, 4),
            "usd_per_million": None if hours is None or price is None else round(hours * price.usd, 4),
        }
    capacity["batch_over_per_record"] = round(
        rates["batch"].predictions_per_second / rates["per_record"].predictions_per_second, 2
    )
    return capacity


def _instance_type(config_path: Path) -> str:
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        return str(config["endpoint"]["realtime"]["instance_type"])
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _fixed_environment(options: BenchOptions) -> dict[str, str | None]:
    variables: dict[str, str | None] = {
        # A fresh moto for this run, whatever the shell points at.
        "AWS_ENDPOINT_URL": None,
        **{f"AWS_ENDPOINT_URL_{service}": None for service in EMULATED_SERVICES},
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION") or REGION,
    }
    if options.endpoint_concurrency is not None:
        variables["ENDPOINT_CONCURRENCY"] = str(options.endpoint_concurrency)
    if "MODEL_INPUT_SCHEMA" not in os.environ:
        # The handlers check inputs against the schema of the model the benchmark serves.
        variables["MODEL_INPUT_SCHEMA"] = str(model_input_schema_path(options.project_dir / "model").resolve())
    return variables


def _footprint(options: BenchOptions, progress: Progress) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-") as work:
        progress("chalice package (deployment package size)")
        environment = dict(os.environ)
        package = build_package(options.project_dir, Path(work), options.stage, environment)
        progress(
            f"cold start: {options.cold_start_repetitions} x 2 fresh interpreters in the unpacked package "
            f"(packaging took {package.seconds:.1f} s)"
        )
        cold = measure_cold_start(
            unpack(package.zip_path, Path(work) / "unpacked"), environment, options.cold_start_repetitions
        )
    return {
        "package_bytes": package.size_bytes,
        "package_seconds": round(package.seconds, 2),
        "import_ratio": round(cold.ratio, 3),
        "import_ratio_spread": [round(value, 3) for value in cold.ratio_spread],
        "cold_start_ms": {
            "app_import": round(cold.app_import * 1000, 1),
            "app_import_and_clients": round(cold.app_import_and_clients * 1000, 1),
            "boto3_import_and_clients": round(cold.boto3_import_and_clients * 1000, 1),
            "repetitions": cold.repetitions,
        },
    }


def _handler_figures(
    bench: HandlerBench, options: BenchOptions, slow_url: str, fast_url: str, progress: Progress, cost_batch_size: int
) -> dict[str, HandlerFigures]:
    figures = {}
    sizes = ", ".join(str(size) for size in options.batch_sizes)
    for name in HANDLERS:
        progress(f"wall time and API calls, {HANDLER_LABELS[name]}: batches of {sizes}")
        figures[name] = bench.measure(name, slow_url, options.batch_sizes, options.repeats, cost_batch_size)
    for name in HANDLERS:
        progress(f"handler CPU, {HANDLER_LABELS[name]}: {options.cpu_invocations} batches of {REFERENCE_BATCH_SIZE}")
        figures[name].cpu_ms_per_record = bench.cpu_ms_per_record(name, fast_url, options.cpu_invocations)
    return figures


def _handler_results(figures: dict[str, HandlerFigures], latency_ms: int) -> dict[str, Any]:
    def at(size: int) -> dict[str, float | None]:
        return {name: _round(figure.latency_ms_by_batch_size.get(size), 1) for name, figure in figures.items()}

    def multiple(size: int) -> dict[str, float | None]:
        # With no artificial latency a multiple means nothing; the milliseconds still do.
        return {
            name: None if value is None or not latency_ms else round(value / latency_ms, 2)
            for name, value in at(size).items()
        }

    return {
        "latency_ms_by_batch_size": {
            name: {str(size): round(ms, 1) for size, ms in figure.latency_ms_by_batch_size.items()}
            for name, figure in figures.items()
        },
        "batch10_latency_ms": at(10),
        "batch100_latency_ms": at(100),
        "batch10_latency_multiple": multiple(10),
        "batch100_latency_multiple": multiple(100),
        "calls_per_1000": {
            name: {kind: round(count, 1) for kind, count in figure.calls_per_1000.items()}
            for name, figure in figures.items()
        },
        "get_queue_url_per_1000": {name: round(figure.get_queue_url_per_1000, 1) for name, figure in figures.items()},
        "cpu_ms_per_record": _round(figures["batch"].cpu_ms_per_record, 3),
        "cpu_ms_per_record_by_handler": {name: _round(figure.cpu_ms_per_record, 3) for name, figure in figures.items()},
        "cpu_share_of_naive": {
            name: _share(figures[name].cpu_ms_per_record, figures["naive"].cpu_ms_per_record)
            for name in ("batch", "per_record")
        },
    }


def _share(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else round(part / whole, 3)


def _throughput(options: BenchOptions, progress: Progress) -> dict[str, Any]:
    progress(
        f"local throughput: {options.ceiling_messages} messages through a send/receive loop, then "
        f"{options.pipeline_messages} through the local pipeline"
    )
    throughput = measure_throughput(
        options.project_dir, options.pipeline_messages, options.ceiling_messages, options.samples_path
    )
    return {
        "local_throughput_fraction": round(throughput.fraction, 3),
        "local_throughput": {
            "pipeline_msg_per_s": round(throughput.pipeline_msg_per_s, 1),
            "emulator_ceiling_msg_per_s": round(throughput.emulator_ceiling_msg_per_s, 1),
            "queue_hops": QUEUE_HOPS,
            "ceiling_path": CEILING_PATH,
            "pipeline_messages": throughput.pipeline_messages,
            "ceiling_messages": throughput.ceiling_messages,
            "pipeline_lost": throughput.pipeline_lost,
        },
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _sizes(text: str) -> tuple[int, ...]:
    sizes = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("batch sizes are positive whole numbers, e.g. 1,10,100")
    return sizes


def parse_options(argv: Sequence[str] | None) -> BenchOptions:
    defaults = BenchOptions()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=int, default=defaults.latency_ms, help="endpoint latency (default 50)")
    parser.add_argument("--out", type=Path, default=defaults.out, help="directory for results.json and latency.png")
    parser.add_argument("--batch-sizes", type=_sizes, default=defaults.batch_sizes, help="default 1,10,25,50,100")
    parser.add_argument("--max-repeats", type=int, default=defaults.max_repeats, help="invocations per batch size")
    parser.add_argument("--cpu-invocations", type=int, default=defaults.cpu_invocations)
    parser.add_argument("--cold-start-repetitions", type=int, default=defaults.cold_start_repetitions)
    parser.add_argument("--capacity-records", type=int, default=defaults.capacity_records)
    parser.add_argument("--prices", type=Path, help="price file (default deploy/prices.json)")
    parser.add_argument("--pipeline-messages", type=int, default=defaults.pipeline_messages)
    parser.add_argument("--ceiling-messages", type=int, default=defaults.ceiling_messages)
    parser.add_argument(
        "--endpoint-concurrency", type=int, help="override the stage's ENDPOINT_CONCURRENCY for both modes"
    )
    parser.add_argument("--stage", default=defaults.stage, help="Chalice stage whose settings to use (default dev)")
    parser.add_argument(
        "--project-dir", type=Path, default=defaults.project_dir, help="project whose app.py and model/ to measure"
    )
    parser.add_argument("--no-plot", dest="plot", action="store_false", help="skip latency.png (no matplotlib)")
    parser.add_argument(
        "--file",
        type=Path,
        help="JSON Lines of your own events (model inputs or envelopes) to send (default model/samples.jsonl)",
    )
    args = parser.parse_args(argv)
    return BenchOptions(**vars(args))


def main(argv: Sequence[str] | None = None, stream: TextIO | None = sys.stderr) -> int:
    """Run the benchmark, print the table and the method, write results.json and latency.png."""
    options = parse_options(argv)
    progress = Progress(stream)
    try:
        load_samples(options.samples_path)
        load_prices(options.prices_path)
    except (SamplesError, PriceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    options.out.mkdir(parents=True, exist_ok=True)
    # The handlers' thousands of log and metric lines would bury the progress lines and the table.
    handler_log_path = options.out / "handler.log"
    with handler_log(handler_log_path):
        results = run_benchmark(options, progress, handler_log_path)
    verdicts = judge(results)
    results["targets_met"] = verdicts
    write_json(results, options.out / "results.json")
    if options.plot:
        progress(f"plotting {options.out / 'latency.png'}")
        plot_latency(results, options.out / "latency.png")
    progress("done")
    print(render_table(results))
    print()
    print(render_cost_table(results))
    print()
    print(
        METHOD.format(
            latency=options.latency_ms,
            repeats=options.max_repeats,
            concurrency=results["endpoint_concurrency"],
            per_record_concurrency=options.endpoint_concurrency or PER_RECORD_CONCURRENCY,
            reference=REFERENCE_BATCH_SIZE,
            source=SOURCE_LABEL,
            destination=DESTINATION_LABEL,
            publish_api=PUBLISH_API,
            ceiling_path=CEILING_PATH,
            cold_repetitions=options.cold_start_repetitions,
            cost_batch_size=results["cost_per_million"]["batch_size"],
            prices=options.prices_path,
            memory_mb=results["cost_per_million"]["memory_mb"],
            vcpu_share=min(1.0, results["cost_per_million"]["memory_mb"] / LAMBDA_MB_PER_VCPU),
            capacity_records=options.capacity_records,
            batch_records=RECORDS_PER_CALL["batch"],
        )
    )
    missed = [metric for metric, met in verdicts.items() if met is False]
    print(f"\nwrote {options.out / 'results.json'}" + (f" and {options.out / 'latency.png'}" if options.plot else ""))
    print(f"handler log: {handler_log_path}")
    if missed:
        print(f"targets missed: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
