"""The SageMaker TensorFlow Serving container's front (`GET /ping`, `POST /invocations`), reproduced.

Behaviour copied from the container's Python service (aws/deep-learning-containers
`tensorflow/inference/docker/build_artifacts/sagemaker/python_service.py` and `tfs_utils.py`, and the
older aws/sagemaker-tensorflow-serving-container), as seen by a client:
- `code/inference.py` is imported by path as module `inference`; `handler` wins, else both
  `input_handler` and `output_handler` (the service then POSTs the input handler's result to
  `context.rest_uri` with a plain `requests.post` and passes the response to the output handler), else
  start-up fails. With no `inference.py`, the body is forwarded to TF Serving as is and its answer returned.
  `code/lib` goes on `sys.path`; `code/requirements.txt` is pip-installed by the container, not here
  (a non-empty one is reported at start).
- `context` is the same namedtuple: `model_name`, `model_version`, `method` from the
  `X-Amzn-SageMaker-Custom-Attributes` header (`tfs-model-name=...,tfs-model-version=...,tfs-method=...`),
  `rest_uri` `http://localhost:<port>/v1/models/<name>[/versions/<v>]:<method>` (name `model`, method
  `predict` by default), `grpc_port` (a string; None with the stand-in, which has no gRPC), `channel`
  (None here), `custom_attributes`,
  `request_content_type` and `accept_header` (`application/json` when absent), `content_length`.
- The status is 200 with the handler's `(body, content_type)`; any exception gives 500 with
  `{"error": str(exception)}` as `application/json` (logged with its traceback). `GET /ping` answers 200
  with an empty body; other paths 404 `{"error": "Not Found"}` as the container's nginx does.
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import re
import sys
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import requests

from deploy.local.httpserver import Request, Response, json_error

LOG = logging.getLogger("ncf.local.container")

CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
DEFAULT_MEDIA_TYPE = "application/json"

Context = namedtuple(
    "Context",
    "model_name, model_version, method, rest_uri, grpc_port, channel, "
    "custom_attributes, request_content_type, accept_header, content_length",
)

Handler = Callable[[Any, Context], tuple[Any, str]]


def tfs_attributes(header: str | None) -> dict[str, str]:
    """`tfs-*=value` pairs from the custom attributes header (other attributes are the model's business)."""
    pairs = re.findall(r"(tfs-[a-z\-]+)=([^,]+)", header or "")
    return {key: value.strip() for key, value in pairs}


def rest_uri(port: int, attributes: dict[str, str], default_model_name: str) -> str:
    """TF Serving's REST URL for this request, as the container builds it."""
    uri = f"http://localhost:{port}/v1/models/{attributes.get('tfs-model-name', default_model_name)}"
    if "tfs-model-version" in attributes:
        uri += "/versions/" + attributes["tfs-model-version"]
    return uri + ":" + attributes.get("tfs-method", "predict")


def import_inference(script: Path) -> ModuleType:
    """Import `code/inference.py` by path, as module `inference`, with `code/lib` on `sys.path`."""
    lib = script.parent / "lib"
    if lib.is_dir() and str(lib) not in sys.path:
        sys.path.append(str(lib))
    spec = importlib.util.spec_from_file_location("inference", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_handler(module: ModuleType | None) -> Handler:
    """The container's choice: `handler`, else `input_handler` + `output_handler`, else pass-through."""
    if module is None:
        return _default_handler
    if hasattr(module, "handler"):
        return module.handler
    if hasattr(module, "input_handler") and hasattr(module, "output_handler"):
        input_handler, output_handler = module.input_handler, module.output_handler

        def handler(data: Any, context: Context) -> tuple[Any, str]:
            processed = input_handler(data, context)
            response = requests.post(context.rest_uri, data=processed)
            return output_handler(response, context)

        return handler
    raise NotImplementedError("Handlers are not implemented correctly in user script.")


def _default_handler(data: Any, context: Context) -> tuple[Any, str]:
    response = requests.post(context.rest_uri, data=data.read().decode("utf-8"))
    return response.content, context.accept_header


class ContainerFront:
    """`GET /ping` and `POST /invocations` of the serving container, as an `App`."""

    def __init__(
        self,
        code_dir: Path,
        tfs_rest_port: int,
        *,
        tfs_grpc_port: int | None = None,
        model_name: str = "model",
    ) -> None:
        script = code_dir / "inference.py"
        self.module = import_inference(script) if script.is_file() else None
        self.handler = make_handler(self.module)
        self.tfs_rest_port = tfs_rest_port
        self.tfs_grpc_port = None if tfs_grpc_port is None else str(tfs_grpc_port)
        self.model_name = model_name
        requirements = code_dir / "requirements.txt"
        if requirements.is_file() and any(
            line.strip() and not line.lstrip().startswith("#")
            for line in requirements.read_text().splitlines()
        ):
            LOG.warning(
                "%s lists packages: the container pip-installs them, here they must be installed",
                requirements,
            )

    def __call__(self, request: Request) -> Response:
        path = request.path.split("?", 1)[0]
        if path == "/ping" and request.method == "GET":
            return Response(200, b"", content_type=None)
        if path == "/invocations" and request.method == "POST":
            return self.invoke(request)
        if path in ("/ping", "/invocations"):
            return json_error(405, f"{request.method} is not allowed on {path}")
        return json_error(404, "Not Found")

    def context(self, request: Request) -> Context:
        header = request.headers.get(CUSTOM_ATTRIBUTES_HEADER)
        attributes = tfs_attributes(header)
        length = request.headers.get("Content-Length")
        return Context(
            attributes.get("tfs-model-name"),
            attributes.get("tfs-model-version"),
            attributes.get("tfs-method"),
            rest_uri(self.tfs_rest_port, attributes, self.model_name),
            self.tfs_grpc_port,
            None,
            header,
            request.headers.get("Content-Type") or DEFAULT_MEDIA_TYPE,
            request.headers.get("Accept") or DEFAULT_MEDIA_TYPE,
            int(length) if length else None,
        )

    def invoke(self, request: Request) -> Response:
        """Run the handler: 200 with its `(body, content_type)`, or 500 `{"error": str(e)}`."""
        try:
            body, content_type = self.handler(io.BytesIO(request.body), self.context(request))
            if isinstance(body, str):
                body = body.encode("utf-8")
            elif not isinstance(body, bytes | bytearray):
                raise TypeError(f"handler returned a {type(body).__name__} body, not str or bytes")
            return Response(200, bytes(body), content_type=content_type or DEFAULT_MEDIA_TYPE)
        except Exception as err:
            LOG.exception("exception handling request: %s", err)
            return Response(500, json.dumps({"error": str(err)}).encode("utf-8"))
