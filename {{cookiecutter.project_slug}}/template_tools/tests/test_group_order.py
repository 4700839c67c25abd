# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""{% if cookiecutter.input_source == "kinesis" %}Kinesis{% else %}FIFO{% endif %} order: a record to retry holds back the later records of its group, and only those.

The handler runs through the Chalice test client against moto and the local endpoint. Groups are
{% if cookiecutter.input_source == "kinesis" %}partition keys{% else %}MessageGroupIds{% endif %}; a later record of a group must never be published before an earlier one
that is still to be retried, while other groups go on.
"""

import pytest
from chalice.test import Client

from template_tools.endpoint_server import Fault
from template_tools.stage import PROJECT_DIR, packaged_environment, patched_environ

from .echo_inputs import broken_json_body, echo_body, id_marker
from .lambda_events import failure_id, lambda_event, message_id

HANDLER = "handle_feature_events"
# Group A's second record is the one that fails in each test.
GROUPS = ["group-a", "group-a", "group-a", "group-b", "group-b"]


def invoke(chalice_app, bodies: list[str]) -> tuple[set[str], list[dict]]:
    with Client(chalice_app.app, stage_name="dev", project_dir=str(PROJECT_DIR)) as client:
        event = lambda_event(client, bodies, GROUPS)
        response = client.lambda_.invoke(HANDLER, event).payload
    return {failure["itemIdentifier"] for failure in response["batchItemFailures"]}, event["Records"]


@pytest.fixture
def one_record_per_call(pipeline, chalice_app, stage):
    """A fault matching one record then fails that record's call alone.

    The test client sets the stage's own RECORDS_PER_ENDPOINT_CALL on every call, so the
    processor is built here, with one record per call, and the handler reuses it.
    """
    with patched_environ({**packaged_environment(stage), "RECORDS_PER_ENDPOINT_CALL": "1"}):
        chalice_app.batch_processor()


def test_a_record_to_retry_holds_back_the_rest_of_its_group_and_no_other(
    one_record_per_call, pipeline, chalice_app, endpoint
):
    """Throttling on A2 must keep A2 and A3 unpublished and retried; A1 and group B go through."""
    endpoint.inject(Fault(error="ThrottlingException", match=id_marker(1)))
    failed, records = invoke(chalice_app, [echo_body(n, key=GROUPS[n]) for n in range(5)])

    assert failed == {failure_id(records[1]), failure_id(records[2])}
    published = {envelope["message_id"] for envelope in pipeline.predictions()}
    assert published == {message_id(records[0]), message_id(records[3]), message_id(records[4])}
    assert pipeline.dead_letters() == []


def test_a_prediction_the_destination_refuses_holds_back_the_rest_of_its_group(pipeline, chalice_app):
    """A refused publish of A1 is a failure like any other: A2 and A3 must wait for it."""
    with pipeline.refusing(id_marker(0)):
        failed, records = invoke(chalice_app, [echo_body(n, key=GROUPS[n]) for n in range(5)])

    assert failed == {failure_id(record) for record in records[:3]}
    assert {envelope["message_id"] for envelope in pipeline.predictions()} == {
        message_id(records[3]),
        message_id(records[4]),
    }


def test_a_record_that_can_never_succeed_is_dead_lettered_and_its_group_goes_on(pipeline, chalice_app):
    """Holding a group back for a record that will fail forever would stall it: it is dead-lettered instead."""
    bodies = [echo_body(n, key=GROUPS[n]) for n in range(5)]
    bodies[1] = broken_json_body(1)
    failed, records = invoke(chalice_app, bodies)

    assert failed == set()
    (dead,) = pipeline.dead_letters()
    assert dead["Body"] == bodies[1]
    assert dead["MessageAttributes"]["error_code"]["StringValue"] == "InvalidJson"
    published = {envelope["message_id"] for envelope in pipeline.predictions()}
    assert published == {message_id(record) for number, record in enumerate(records) if number != 1}
