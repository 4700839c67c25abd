# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Scaled time for the tests that wait on the emulator's queues.

A fault test waits out visibility timeouts and function timeouts. Played at full length the
same faults take seconds each; scaled down, the tests wait less and check the same behaviour.
The local trigger keeps fractional timeouts itself (SQS takes whole seconds), see
`SqsTrigger(visibility_timeout_seconds=...)`.

What scaling shortens is the endpoint's share of an invocation (FaultTimings.scaled); the
deadline reserve, the time publishing gets, stays PUBLISHING_RESERVE_MS.

How far down is safe: the endpoint's share (function timeout less the deadline reserve) must
cover a cold handler's first call, which creates its AWS clients, and a batch's answer from the
local endpoint, on a machine busy with other work; short of that, records are retried on their
deadline and the tests' delivery counts change. The scaled timings keep at least 2 s of it for
batches of 10 records that take about 50 ms once warm: with 1 s, a CI run on a 2-core machine
busy with three suites saw a redelivered batch's call go unanswered for the 0.7 s it had left.
"""

from template_tools.fault_plan import FaultTimings

TIME_SCALE = 0.5

# The deadline reserve the timed tests run with, unscaled. A publishing call's timeouts are cut
# to fit the reserve (deadline.publishing_budget), and moto's server answers slower when the
# machine is busy: with a 0.5 s reserve, on a 2-core machine running three suites and a CPU hog,
# a PutRecords took longer than the 0.4 s that leaves, the handler retried records it had
# predicted, and the trigger's function timeout failed a batch that had published. The handler's
# default is 3 s (DEADLINE_RESERVE_MS).
PUBLISHING_RESERVE_MS = 2000


def scaled_timings(
    visibility_timeout_seconds: float, max_receive_count: int, function_timeout_seconds: float
) -> FaultTimings:
    """Timings given at full length with PUBLISHING_RESERVE_MS, scaled by TIME_SCALE (FaultTimings.scaled)."""
    timings = FaultTimings(
        visibility_timeout_seconds=visibility_timeout_seconds,
        max_receive_count=max_receive_count,
        function_timeout_seconds=function_timeout_seconds,
        deadline_reserve_ms=PUBLISHING_RESERVE_MS,
    )
    return timings.scaled(TIME_SCALE)
