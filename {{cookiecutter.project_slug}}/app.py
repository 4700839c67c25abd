"""Lambda entry point: the features queue triggers the batch processor in chalicelib/."""

from functools import cache

from chalice import Chalice
from chalice.app import SQSEvent

from chalicelib.batch import BatchProcessor
from chalicelib.settings import HandlerSettings, TriggerSettings

app = Chalice(app_name="{{ cookiecutter.project_slug }}")

# Read while `chalice package`/`deploy` import this file: the stage's environment variables
# are set then, so each stage can have its own queue and trigger settings.
trigger = TriggerSettings.from_env()


@cache
def batch_processor() -> BatchProcessor:
    """Clients and thread pool, created on the first invocation and reused by every later one."""
    return BatchProcessor.from_settings(HandlerSettings.from_env())


# Chalice does not set ReportBatchItemFailures on the event source mapping (aws/chalice#2029):
# `make package` adds it through the merge template. Without it Lambda would ignore the
# returned failure list and delete the whole batch.
@app.on_sqs_message(
    queue=trigger.features_queue_name,
    batch_size=trigger.batch_size,
    maximum_batching_window_in_seconds=trigger.batching_window_seconds,
    maximum_concurrency=trigger.maximum_concurrency,
)
def handle_feature_events(event: SQSEvent) -> dict:
    return batch_processor().process(event.to_dict()["Records"], event.context)
