"""Scaled time for the tests that wait on the emulator's queues.

A fault test waits out visibility timeouts and function timeouts. Played at full length the
same faults take seconds each; scaled down, the tests wait less and check the same behaviour.
The local trigger keeps fractional timeouts itself (SQS takes whole seconds), see
`SqsTrigger(visibility_timeout_seconds=...)`.

How far down is safe: a batch must still finish well inside the scaled function timeout on a
loaded machine, or the trigger times the invocation out and redelivers the whole batch. At 0.5
the shortest function timeout is 1 s, for batches of 10 records that take about 50 ms on an
idle 2-core machine.
"""

TIME_SCALE = 0.5
