# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""A local SageMaker endpoint: serves `model/code/inference.py` over the InvokeEndpoint protocol.

The model runs in a child process on its own Python (template_tools/model_worker.py in the
virtualenv that holds model/code/requirements.txt, see model_environment.py), as it runs in its
own container in AWS: what it imports must be in its requirements, and its packages never mix
with the handler's.

The streaming handler's boto3 `sagemaker-runtime` client talks to it exactly as it talks to AWS
(point `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` at `LocalEndpoint.url`), so local runs and tests
exercise the real request, response and error path, botocore's retries included. Injected
faults answer the way SageMaker does when an endpoint throttles, is not ready or fails.

    python -m template_tools.endpoint_server --model-dir model --latency-ms 50
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from chalicelib.template_runtime.aws_limits import INVOKE_ENDPOINT_MAX_REQUEST_BYTES

from .model_environment import ModelEnvironmentError, model_python

# What SageMaker Runtime answers for each error code (botocore's service model agrees).
ERROR_STATUS = {
    "ThrottlingException": 400,
    "ModelNotReadyException": 429,
    "ServiceUnavailable": 503,
    "InternalFailure": 500,
    "ModelError": 424,
}
ACCOUNT_ID = "000000000000"
# SageMaker's framework containers hand output_fn this Accept when a request has none (or */*):
# their SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT default.
DEFAULT_ACCEPT = "application/json"
_INVOCATIONS_PATH = re.compile(r"^/endpoints/(?P<name>[^/]+)/invocations$")
# The region the client signed for, so a LogStreamArn names the same region the caller uses.
_SIGNED_REGION = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/")
MODEL_WORKER = Path(__file__).resolve().with_name("model_worker.py")
# How long a worker gets to exit after its stdin closes before it is killed.
WORKER_STOP_TIMEOUT_SECONDS = 5


class ModelLoadError(RuntimeError):
    """The model's inference.py could not be imported, or its model_fn failed."""


@dataclass(frozen=True)
class Fault:
    """An answer the endpoint gives instead of a prediction, to test a client's error paths.

    `error` is a SageMaker Runtime error code, or None for a slow but correct answer; `match`
    limits the fault to requests whose body contains it (None: every request); `times` is how
    many requests it hits before it is used up (None: forever); `delay_ms` delays the answer.
    """

    error: str | None = None
    match: str | None = None
    times: int | None = None
    delay_ms: int = 0

    def __post_init__(self) -> None:
        if self.error is not None and self.error not in ERROR_STATUS:
            raise ValueError(f"error must be one of {sorted(ERROR_STATUS)} or None")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1, or None for forever")
        if self.delay_ms < 0:
            raise ValueError("delay_ms must not be negative")


@dataclass(frozen=True)
class _Answer:
    status: int
    body: bytes
    headers: dict[str, str]


class _ModelWorker:
    """model_worker.py in a child process on the model's Python; one request at a time."""

    def __init__(self, model_dir: Path, python: Path) -> None:
        self._lock = threading.Lock()
        # Which idle workers it may join once its endpoint stops (set by _IdleWorkers.take).
        self.key: tuple[object, ...] = ()
        # stderr is inherited: the model's own prints and logs show where the endpoint's do.
        self._process = subprocess.Popen(
            [str(python), str(MODEL_WORKER), "--model-dir", str(model_dir.resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        ready = self._read()
        if not ready.get("ready"):
            self.stop()
            reason = ready.get("error") or f"the model worker exited with code {self._process.returncode}"
            raise ModelLoadError(
                f"the model in {model_dir} did not load:\n{reason}\n"
                "If load_model reads an artifact that is not there yet, build it first "
                "(for the example model: make train)."
            )

    def invoke(self, body: bytes, content_type: str, accept: str) -> dict[str, Any]:
        """The worker's answer to one request (see model_worker.py for its fields)."""
        request = {"body": base64.b64encode(body).decode("ascii"), "content_type": content_type, "accept": accept}
        with self._lock:
            try:
                self._process.stdin.write(json.dumps(request) + "\n")
                self._process.stdin.flush()
            except (BrokenPipeError, ValueError):
                pass  # read() below reports the exit
            answer = self._read()
        if "ok" not in answer:
            message = f"the model worker exited with code {self._process.poll()}; its stderr says why"
            return {"ok": False, "error": f"RuntimeError: {message}", "message": message, "client_error": False}
        return answer

    def alive(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        """Close its stdin, which ends it; kill it if it does not end in time."""
        with contextlib.suppress(BrokenPipeError, ValueError):
            self._process.stdin.close()
        try:
            self._process.wait(timeout=WORKER_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        # Under the lock: a request still in flight on a server thread reads EOF first, not a closed file.
        with self._lock:
            self._process.stdout.close()

    def _read(self) -> dict[str, Any]:
        """The worker's next line, or {} when it has exited."""
        try:
            line = self._process.stdout.readline()
        except ValueError:  # stdout closed by stop()
            return {}
        if not line:
            self._process.wait()
            return {}
        return json.loads(line)


def _model_fingerprint(model_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file of the model directory with its size and modification time."""
    files = sorted(path for path in model_dir.rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    return tuple((str(path), path.stat().st_size, path.stat().st_mtime_ns) for path in files)


class _IdleWorkers:
    """Loaded workers kept between endpoints of one process, one model directory and Python each.

    Starting a worker is a Python start-up, the model's import and model_fn: a tenth of a second
    on a quiet machine and several times that on a busy one, paid by every test that starts an
    endpoint. A worker is reused only while every file of its model directory is unchanged, and
    ends with this process: its stdin closes, and it exits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[tuple[object, ...], list[_ModelWorker]] = {}

    def take(self, model_dir: Path, python: Path) -> _ModelWorker:
        key = (str(python), str(model_dir.resolve()), _model_fingerprint(model_dir))
        with self._lock:
            workers = self._idle.get(key, [])
            while workers:
                worker = workers.pop()
                if worker.alive():
                    return worker
        worker = _ModelWorker(model_dir, python)
        worker.key = key
        return worker

    def give_back(self, worker: _ModelWorker) -> None:
        if not worker.alive():
            worker.stop()
            return
        with self._lock:
            self._idle.setdefault(worker.key, []).append(worker)

    def stop_all(self) -> None:
        with self._lock:
            workers = [worker for idle in self._idle.values() for worker in idle]
            self._idle.clear()
        for worker in workers:
            worker.stop()


_IDLE_WORKERS = _IdleWorkers()
atexit.register(_IDLE_WORKERS.stop_all)


class LocalEndpoint:
    """A SageMaker endpoint on 127.0.0.1 that hosts the model's own inference.py."""

    def __init__(
        self,
        model_dir: Path,
        *,
        port: int = 0,
        latency_ms: int = 0,
        endpoint_name: str | None = None,
        variant_name: str = "AllTraffic",
        python: Path | None = None,
    ) -> None:
        """`endpoint_name` None answers any name; otherwise other names are not found.

        `python` runs the model; by default the one model_environment builds from the model's
        requirements.txt. The model loads (model_fn runs once) when the endpoint starts.
        """
        self.model_dir = Path(model_dir)
        self.latency_ms = latency_ms
        self.endpoint_name = endpoint_name
        self.variant_name = variant_name
        self._port = port
        self._python = python
        self._worker: _ModelWorker | None = None
        self._lock = threading.Lock()
        self._faults: list[tuple[Fault, int | None]] = []
        self._invocations = 0
        # Requests sleeping out their latency now, and the most there ever were at once.
        self._in_latency = 0
        self._peak_in_latency = 0
        self._server: _EndpointHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The endpoint URL for `AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`."""
        if self._server is None:
            raise RuntimeError("the endpoint is not running")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def peak_overlap(self) -> int:
        """The most requests that were waiting out their latency at the same moment."""
        with self._lock:
            return self._peak_in_latency

    @property
    def invocations(self) -> int:
        """How many InvokeEndpoint requests arrived, faulted ones and retries included."""
        with self._lock:
            return self._invocations

    def inject(self, fault: Fault) -> None:
        """Answer matching requests with `fault`; earlier faults are checked first."""
        with self._lock:
            self._faults.append((fault, fault.times))

    def withdraw(self, fault: Fault) -> None:
        """Stop answering with this one fault (an outage that ends), leaving the others in place."""
        with self._lock:
            self._faults[:] = [(planned, left) for planned, left in self._faults if planned is not fault]

    def clear_faults(self) -> None:
        """Go back to answering every request with a prediction."""
        with self._lock:
            self._faults.clear()

    def start(self) -> LocalEndpoint:
        """Load the model in its worker, then serve on a background thread.

        Raises ModelLoadError when inference.py does not import or model_fn fails, and
        model_environment.ModelEnvironmentError when the model's packages do not install.
        """
        python = self._python or model_python(self.model_dir)
        # model_fn runs once, before the first request can arrive, as when a container starts.
        self._worker = _IDLE_WORKERS.take(self.model_dir, python)
        try:
            self._server = _EndpointHTTPServer(("127.0.0.1", self._port), self)
        except OSError:
            self.stop()
            raise
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every open connection and leave the model's worker idle for the next endpoint."""
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._thread.join()
            self._server = self._thread = None
        if self._worker is not None:
            _IDLE_WORKERS.give_back(self._worker)
            self._worker = None

    def __enter__(self) -> LocalEndpoint:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def handle_invocation(self, name: str, body: bytes, headers: dict[str, str]) -> _Answer:
        """Answer one InvokeEndpoint request (called on the server's request threads)."""
        with self._lock:
            self._invocations += 1
        # SageMaker refuses these before any container sees them, so they use up no fault.
        if self.endpoint_name is not None and name != self.endpoint_name:
            message = f"Endpoint {name} of account {ACCOUNT_ID} not found."
            return _error("ValidationError", 400, message)
        if len(body) > INVOKE_ENDPOINT_MAX_REQUEST_BYTES:
            message = f"Request payload of {len(body)} bytes exceeds {INVOKE_ENDPOINT_MAX_REQUEST_BYTES} bytes."
            return _error("ValidationError", 400, message)
        region_match = _SIGNED_REGION.search(headers.get("authorization", ""))
        region = region_match["region"] if region_match else "us-east-1"
        log_stream_arn = f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:/aws/sagemaker/Endpoints/{name}"
        with self._lock:
            fault = self._take_fault(body.decode("utf-8", errors="replace"))
        # Sleeping outside the lock lets concurrent requests overlap, as a multi-worker
        # container serves them.
        if fault is not None:
            time.sleep(fault.delay_ms / 1000)
            if fault.error == "ModelError":
                return self._model_error(400, "Injected fault", log_stream_arn)
            if fault.error is not None:
                return _error(fault.error, ERROR_STATUS[fault.error], f"Injected {fault.error}")
        with self._lock:
            self._in_latency += 1
            self._peak_in_latency = max(self._peak_in_latency, self._in_latency)
        try:
            time.sleep(self.latency_ms / 1000)
        finally:
            with self._lock:
                self._in_latency -= 1
        worker = self._worker
        if worker is None:
            return _error("ModelNotReadyException", ERROR_STATUS["ModelNotReadyException"], "The model is not loaded.")
        accept = headers.get("accept", "*/*")
        accept = DEFAULT_ACCEPT if accept == "*/*" else accept
        answer = worker.invoke(body, headers.get("content-type", "application/json"), accept)
        if not answer["ok"]:
            # The containers answer a ValueError with 400 and its message, anything else with 500.
            if answer["client_error"]:
                return self._model_error(400, answer["message"], log_stream_arn)
            return self._model_error(500, answer["error"], log_stream_arn)
        response_headers = {
            "Content-Type": answer["content_type"],
            "x-Amzn-Invoked-Production-Variant": self.variant_name,
        }
        return _Answer(200, base64.b64decode(answer["payload"]), response_headers)

    def _take_fault(self, body: str) -> Fault | None:
        """Return the fault that answers this body and count one use of it (lock held).

        The first matching fault that carries an error wins over any slow-only one: a batch
        request holding a record the model rejects fails whatever else it holds, as it would in
        a real container. With no error among the matches, the first slow-only fault applies.
        """
        matching = [
            index for index, (fault, _) in enumerate(self._faults) if fault.match is None or fault.match in body
        ]
        if not matching:
            return None
        erroring = [index for index in matching if self._faults[index][0].error is not None]
        index = (erroring or matching)[0]
        fault, remaining = self._faults[index]
        if remaining == 1:
            del self._faults[index]
        elif remaining is not None:
            self._faults[index] = (fault, remaining - 1)
        return fault

    def _model_error(self, original_status: int, original_message: str, log_stream_arn: str) -> _Answer:
        kind = "client" if original_status < 500 else "server"
        message = (
            f"Received {kind} error ({original_status}) from {self.variant_name} with message "
            f'"{original_message}". See {log_stream_arn} for more information.'
        )
        return _error(
            "ModelError",
            ERROR_STATUS["ModelError"],
            message,
            OriginalStatusCode=original_status,
            OriginalMessage=original_message,
            LogStreamArn=log_stream_arn,
        )


def _error(code: str, status: int, message: str, **fields: object) -> _Answer:
    """An AWS JSON-protocol error: botocore reads the code from the header, fields from the body."""
    body = json.dumps(dict(Message=message, **fields)).encode("utf-8")
    return _Answer(status, body, {"Content-Type": "application/json", "x-amzn-ErrorType": code})


class _EndpointHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], endpoint: LocalEndpoint) -> None:
        self.endpoint = endpoint
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _InvocationHandler)

    def close_connections(self) -> None:
        """Close kept-alive client connections, which would otherwise outlive the server."""
        with self.connections_lock:
            for connection in self.connections:
                # The client may have hung up already; that is what we want anyway.
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up mid-answer is normal (timeouts, shutdown); anything else is a
        # bug in this server and should be seen.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _InvocationHandler(BaseHTTPRequestHandler):
    # HTTP/1.1 keeps botocore's pooled connections alive between calls, as AWS does.
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; with Nagle's algorithm the body would wait for the
    # client's delayed ACK, adding about 40 ms to every call that SageMaker does not add.
    disable_nagle_algorithm = True
    server: _EndpointHTTPServer

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        super().finish()

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/ping":
            self._send(_Answer(200, b"", {}))
        else:
            self._send(_error("UnknownOperationException", 404, f"No route for GET {self.path}"))

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route = _INVOCATIONS_PATH.match(self.path)
        if route is None:
            self._send(_error("UnknownOperationException", 404, f"No route for POST {self.path}"))
            return
        headers = {key.lower(): value for key, value in self.headers.items()}
        self._send(self.server.endpoint.handle_invocation(route["name"], body, headers))

    def _send(self, answer: _Answer) -> None:
        self.send_response(answer.status)
        for key, value in answer.headers.items():
            self.send_header(key, value)
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Stay quiet: a line per request would drown the local pipeline's progress output."""


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the model until SIGINT or SIGTERM; print the URL first so scripts can read it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("model"))
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=int, default=0, help="model latency per request")
    parser.add_argument("--endpoint-name", help="answer only this endpoint name")
    args = parser.parse_args(argv)
    stopped = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stopped.set())
    endpoint = LocalEndpoint(
        args.model_dir,
        port=args.port,
        latency_ms=args.latency_ms,
        endpoint_name=args.endpoint_name,
    )
    try:
        endpoint.start()
    except (ModelLoadError, ModelEnvironmentError) as error:
        print(error, file=sys.stderr)
        return 1
    try:
        print(endpoint.url, flush=True)
        stopped.wait()
    finally:
        endpoint.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
