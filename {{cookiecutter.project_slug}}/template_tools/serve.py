# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""`make serve`: runs the pipeline against a long-lived emulator until Ctrl-C, for the operator commands.

    python -m template_tools.serve --stage dev

Where `make local` is one self-contained run, this keeps the handler (app.py, cold-started as
Lambda would), the local endpoint and the Lambda-like trigger running against the emulator that
AWS_ENDPOINT_URL names (`make emulator` in another terminal, then LOCAL=1). It creates the stage's
features source, dead-letter queue and predictions destination there first, so `make send`, `make tail`
and `make redrive` (with LOCAL=1) work on them as they would on a deployed stage.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from .destination import create_destination
from .emulator import Redelivery, local_aws_environment
from .lambda_trigger import FunctionConfiguration
from .local_pipeline import (
    DEFAULT_CONCURRENCY,
    LOCAL_TRIGGER_LIMITS,
    EndpointStartError,
    cold_started_handler,
    declared_event_source,
    handler_log,
    handler_model_environment,
    started_endpoint,
)
from .source import create_source, local_trigger
from .stage import PROJECT_DIR, load_stage, patched_environ, stage_environment


class NoEmulatorError(RuntimeError):
    """AWS_ENDPOINT_URL is not set: serving to real AWS is what `make deploy` is for."""


def serve(stage: str, project_dir: Path = PROJECT_DIR) -> None:
    """Create the stage's resources in the emulator, then run the trigger until KeyboardInterrupt."""
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise NoEmulatorError("AWS_ENDPOINT_URL is not set: run `make emulator` in another terminal, then LOCAL=1")
    model_dir = project_dir / "model"
    settings = load_stage(stage, project_dir)
    redelivery = Redelivery()
    with (
        stage_environment(settings),
        local_aws_environment() as emulator_url,
        started_endpoint(model_dir) as endpoint,
        patched_environ(handler_model_environment(settings.environment_variables, model_dir, endpoint.url)),
    ):
        features = create_source(settings.environment_variables, redelivery)
        create_destination(settings.environment_variables)
        with cold_started_handler(project_dir) as app:
            mapping = declared_event_source(app)
            limits = LOCAL_TRIGGER_LIMITS
            trigger = local_trigger(
                app.handle_feature_events,
                features,
                FunctionConfiguration(
                    function_name=settings.function_name,
                    timeout_seconds=settings.lambda_timeout,
                    memory_size_mb=settings.lambda_memory_size,
                ),
                batch_size=limits.bound(mapping.batch_size, limits.batch_size),
                batching_window_seconds=limits.bound(
                    mapping.maximum_batching_window_in_seconds, limits.batching_window_seconds
                ),
                maximum_concurrency=limits.bound(
                    getattr(mapping, "maximum_concurrency", None) or DEFAULT_CONCURRENCY, limits.maximum_concurrency
                ),
                redelivery=redelivery,
            )
            with trigger:
                print(f"serving stage {stage} on the emulator at {emulator_url}; Ctrl-C to stop", file=sys.stderr)
                threading.Event().wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="dev", help="Chalice stage whose settings to run with (default dev)")
    parser.add_argument(
        "--log-file",
        type=Path,
        default=Path("serve-handler.log"),
        help="where the handler's log lines and metrics go (default serve-handler.log)",
    )
    args = parser.parse_args(argv)
    # `kill` stops the trigger as cleanly as Ctrl-C does. (Raising from the handler, not setting
    # an Event: the handler runs in the main thread, which may be inside that Event's wait.)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with handler_log(args.log_file):
        try:
            serve(args.stage)
        except KeyboardInterrupt:
            print("stopped", file=sys.stderr)
        except (NoEmulatorError, FileNotFoundError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except EndpointStartError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
