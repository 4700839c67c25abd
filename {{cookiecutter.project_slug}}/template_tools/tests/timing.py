# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Scaled time for the tests that wait on the emulator's queues.

A fault test waits out visibility timeouts and function timeouts. Played at full length the
same faults take seconds each; scaled down, the tests wait less and check the same behaviour.
The local trigger keeps fractional timeouts itself (SQS takes whole seconds), see
`SqsTrigger(visibility_timeout_seconds=...)`.

How far down is safe: the time an invocation has before its deadline (function timeout less
the deadline reserve) must cover a cold handler's first call, which creates its AWS clients,
on a machine busy with other work; short of that, records are retried on their deadline and the
tests' delivery counts change. The scaled timings keep at least 1 s of it, as the unscaled ones
did, for batches of 10 records that take about 50 ms once warm.
"""

TIME_SCALE = 0.5
