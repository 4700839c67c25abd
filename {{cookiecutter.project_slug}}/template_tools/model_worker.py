# Maintained by the cookiecutter-sagemaker-streaming template: `cruft update` updates it (README: "Taking a file over").
"""Hosts `model_dir/code/inference.py` in the model's own Python, for the local endpoint.

    <model python> template_tools/model_worker.py --model-dir model

Imports inference.py as SageMaker's framework containers do, calls model_fn once, then answers
requests on stdin with one JSON object per line each way:

    start:    {"ready": true}  or  {"ready": false, "error": "<traceback tail>"}
    request:  {"body": "<base64>", "content_type": "...", "accept": "..."}
    answer:   {"ok": true, "payload": "<base64>", "content_type": "..."}
              {"ok": false, "error": "<ExceptionType>: <message>", "message": "<message>", "client_error": bool}

`client_error` is true for a ValueError, which SageMaker's containers answer with 400 (any other
exception is a 500). The worker exits when stdin closes, so it never outlives the endpoint.

Standard library only, and nothing from this project's packages: it runs in the model's virtualenv,
which holds model/code/requirements.txt and nothing else.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO, TextIO

# How much of a load failure's traceback the ready line carries.
TRACEBACK_TAIL_LINES = 20


def load_inference_module(model_dir: Path) -> ModuleType:
    """Import `model_dir/code/inference.py` the way SageMaker's framework containers do."""
    code_dir = model_dir / "code"
    # The container puts code/ on sys.path, so inference.py may import modules next to it.
    sys.path.insert(0, str(code_dir))
    spec = importlib.util.spec_from_file_location("inference", code_dir / "inference.py")
    if spec is None or spec.loader is None:
        raise FileNotFoundError(code_dir / "inference.py")
    module = importlib.util.module_from_spec(spec)
    # Registered before it runs, as a normal import would: dataclasses look their module up.
    sys.modules["inference"] = module
    spec.loader.exec_module(module)
    return module


def answer(inference: ModuleType, model: object, request: dict[str, Any]) -> dict[str, Any]:
    """One request through input_fn -> predict_fn -> output_fn; a model exception is an answer too."""
    try:
        data = inference.input_fn(base64.b64decode(request["body"]), request["content_type"])
        prediction = inference.predict_fn(data, model)
        payload, content_type = inference.output_fn(prediction, request["accept"])
    except Exception as error:  # noqa: BLE001 - any model failure goes back to the caller as a ModelError
        return {
            "ok": False,
            "error": f"{type(error).__name__}: {error}",
            "message": str(error),
            "client_error": isinstance(error, ValueError),
        }
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    return {"ok": True, "payload": base64.b64encode(payload).decode("ascii"), "content_type": content_type}


def serve(model_dir: Path, requests: BinaryIO, protocol: TextIO) -> int:
    """Load the model, say whether it is ready, then answer requests until stdin closes."""
    try:
        inference = load_inference_module(model_dir)
        model = inference.model_fn(str(model_dir))
    except BaseException:  # noqa: BLE001 - a SystemExit or KeyboardInterrupt in model code is a load failure too
        tail = "".join(traceback.format_exc().splitlines(keepends=True)[-TRACEBACK_TAIL_LINES:])
        _send(protocol, {"ready": False, "error": tail.strip()})
        return 1
    _send(protocol, {"ready": True})
    for line in requests:
        if line.strip():
            _send(protocol, answer(inference, model, json.loads(line)))
    return 0


def _send(protocol: TextIO, message: dict[str, Any]) -> None:
    protocol.write(json.dumps(message) + "\n")
    protocol.flush()


def _take_protocol_streams() -> tuple[BinaryIO, TextIO]:
    """Keep stdin and stdout for the protocol, and give the model stderr and /dev/null instead.

    A model that prints (or a library it calls, even from C) would otherwise write into the
    answers; at the file-descriptor level its output goes to stderr, where the endpoint shows it.
    """
    requests = os.fdopen(os.dup(0), "rb")
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - stays open for the process's life
    return requests, protocol


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group; the endpoint decides when the worker stops, by
    # closing its stdin, so a request in flight still gets its answer.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    requests, protocol = _take_protocol_streams()
    # Run as a script, this file's folder (template_tools/) heads sys.path; the model must not
    # import from it, as it could not in the container.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    return serve(args.model_dir.resolve(), requests, protocol)


if __name__ == "__main__":
    raise SystemExit(main())
