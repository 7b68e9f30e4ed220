"""A TF-Serving-compatible REST stand-in: serves a SavedModel's signatures with `tf.saved_model.load`.

Routes (as TF Serving 2.x's REST API): `POST /v1/models/<name>[/versions/<v>]:predict` in the columnar
(`{"signature_name", "inputs"}` -> `{"outputs"}`) and row (`{"instances"}` -> `{"predictions"}`) forms,
`GET /v1/models/<name>[/versions/<v>]/metadata` (the SavedModel's SignatureDefs, read from
`saved_model.pb` like TF Serving does) and `GET /v1/models/<name>[/versions/<v>]` (version status).

Differences from the real `tensorflow_model_server` (used instead when it is on PATH, see
`model_server.py`): only `:predict` (no `:classify`/`:regress`), one version (the highest) loaded, no
request batching, errors carry TensorFlow's Python messages with TF Serving's status codes (400 bad
input, 404 unknown model or version) but not always its exact wording, floats are printed with
Python's `repr` of the float32 value, and string outputs that are not UTF-8 are not base64-encoded.
Each signature is a concrete function traced once at export, so calls never retrace.
"""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2

from deploy.local.httpserver import Request, Response, json_error
from deploy.local.model_artifact import LocalEndpointError, ModelArtifact

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<method>[A-Za-z]+))?$"
)


class InputError(ValueError):
    """A predict request TF Serving would refuse with HTTP 400."""


class SavedModelServable:
    """One loaded SavedModel version, answering TF Serving REST requests as an `App`."""

    def __init__(self, artifact: ModelArtifact, name: str = "model") -> None:
        self.name = name
        self.version = artifact.version
        try:
            self._loaded = tf.saved_model.load(str(artifact.version_dir))
        except (OSError, ValueError, tf.errors.OpError) as err:
            raise LocalEndpointError(f"cannot load the SavedModel in {artifact.version_dir}: {err}") from None
        self.signatures = dict(self._loaded.signatures)
        self._input_specs = {
            key: dict(fn.structured_input_signature[1]) for key, fn in self.signatures.items()
        }
        self._signature_defs = _signature_defs(artifact)

    # --------------------------------------------------------------------------------------- routing

    def __call__(self, request: Request) -> Response:
        match = _ROUTE.match(request.path.split("?", 1)[0])
        if match is None:
            return json_error(404, "Malformed request: " + request.method + " " + request.path)
        version = match["version"]
        if match["name"] != self.name or (version is not None and int(version) != self.version):
            what = f"Specific({match['name']}, {version})" if version else f"Latest({match['name']})"
            return json_error(404, f"Servable not found for request: {what}")
        if match["method"]:
            if request.method != "POST":
                return json_error(405, f"{request.method} is not allowed for :{match['method']}")
            if match["method"] != "predict":
                return json_error(400, f"the local stand-in serves only :predict, not :{match['method']}")
            return self.predict(request.body)
        if request.method != "GET":
            return json_error(405, f"{request.method} is not allowed here")
        return Response(200, json.dumps(self.metadata() if match["metadata"] else self.status()).encode())

    def status(self) -> dict[str, Any]:
        """`GET /v1/models/<name>`: one AVAILABLE version."""
        return {
            "model_version_status": [
                {
                    "version": str(self.version),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }

    def metadata(self) -> dict[str, Any]:
        """`GET /v1/models/<name>/metadata`: the SignatureDefs from `saved_model.pb`."""
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": self._signature_defs}},
        }

    # --------------------------------------------------------------------------------------- predict

    def predict(self, body: bytes) -> Response:
        """`POST ...:predict`: run one signature on the columnar or row-form request."""
        try:
            document = json.loads(body)
        except ValueError as err:
            return json_error(400, f"JSON Parse error: {err}")
        if not isinstance(document, dict):
            return json_error(400, "JSON Value is not an object")
        signature = document.get("signature_name", "serving_default")
        if signature not in self.signatures:
            return json_error(400, f'Serving signature name: "{signature}" not found in signature def')
        specs = self._input_specs[signature]
        try:
            if "inputs" in document and "instances" in document:
                raise InputError("Not allowed to mix 'inputs' and 'instances' in the same request")
            if "inputs" in document:
                columnar = True
                tensors = _columnar_inputs(document["inputs"], specs)
            elif "instances" in document:
                columnar = False
                tensors = _row_inputs(document["instances"], specs)
            else:
                raise InputError("Missing 'inputs' or 'instances' key")
            outputs = self.signatures[signature](**tensors)
        except InputError as err:
            return json_error(400, str(err))
        except tf.errors.OpError as err:
            return json_error(400, err.message)
        values = {key: _to_json(tensor.numpy()) for key, tensor in outputs.items()}
        return Response(200, json.dumps(_encode_outputs(values, columnar)).encode())


def _signature_defs(artifact: ModelArtifact) -> dict[str, Any]:
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((artifact.version_dir / "saved_model.pb").read_bytes())
    meta_graph = next(g for g in proto.meta_graphs if "serve" in g.meta_info_def.tags)
    return {
        key: json_format.MessageToDict(value, preserving_proto_field_name=True)
        for key, value in meta_graph.signature_def.items()
    }


def _check_names(given: dict[str, Any], specs: dict[str, tf.TensorSpec]) -> None:
    for name in given:
        if name not in specs:
            raise InputError(
                f"input tensor alias not found in signature: {name}. "
                f"Inputs expected to be in the set {{{','.join(sorted(specs))}}}."
            )
    missing = sorted(set(specs) - set(given))
    if missing:
        raise InputError(f"Missing input(s) for the signature: {', '.join(missing)}")


def _tensor(name: str, value: Any, spec: tf.TensorSpec) -> tf.Tensor:
    try:
        tensor = tf.constant(value, dtype=spec.dtype)
    except (TypeError, ValueError) as err:
        raise InputError(f"input {name}: cannot convert to {spec.dtype.name}: {err}") from None
    if not spec.shape.is_compatible_with(tensor.shape):
        raise InputError(f"input {name}: shape {tensor.shape} does not match the signature's {spec.shape}")
    return tensor


def _columnar_inputs(inputs: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, tf.Tensor]:
    if not isinstance(inputs, dict):
        if len(specs) != 1:
            raise InputError("'inputs' must be an object naming each input when the signature has several")
        inputs = {next(iter(specs)): inputs}
    _check_names(inputs, specs)
    return {name: _tensor(name, value, specs[name]) for name, value in inputs.items()}


def _row_inputs(instances: Any, specs: dict[str, tf.TensorSpec]) -> dict[str, tf.Tensor]:
    if not isinstance(instances, list) or not instances:
        raise InputError("'instances' must be a non-empty list")
    scalars = sorted(name for name, spec in specs.items() if spec.shape.rank == 0)
    if scalars:
        raise InputError(
            f"the row format ('instances') needs a batch dimension on every input; {', '.join(scalars)} "
            "is a scalar: use the columnar format ('inputs')"
        )
    if len(specs) == 1 and not isinstance(instances[0], dict):
        instances = [{next(iter(specs)): row} for row in instances]
    columns: dict[str, list[Any]] = {}
    for index, row in enumerate(instances):
        if not isinstance(row, dict):
            raise InputError(f"instances[{index}] must be an object naming each input")
        _check_names(row, specs)
        for name, value in row.items():
            columns.setdefault(name, []).append(value)
    return {name: _tensor(name, values, specs[name]) for name, values in columns.items()}


def _to_json(array: np.ndarray) -> Any:
    if array.dtype.kind in "OS":
        return np.char.decode(array.astype(bytes), "utf-8", errors="replace").tolist()
    return array.tolist()


def _encode_outputs(values: dict[str, Any], columnar: bool) -> dict[str, Any]:
    if columnar:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    rows = len(next(iter(values.values())))
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    return {"predictions": [{key: value[i] for key, value in values.items()} for i in range(rows)]}
