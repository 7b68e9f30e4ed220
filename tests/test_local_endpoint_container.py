"""The local container front (`/ping`, `/invocations`) against a fake TF Serving: no TensorFlow needed.

Checks what a client of the real SageMaker TF Serving container sees: how handlers are found, the
context they get, 200 with the handler's body and content type, 500 `{"error": str(e)}` on exceptions.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from requests.structures import CaseInsensitiveDict

from deploy.local.container_server import ContainerFront, rest_uri, tfs_attributes
from deploy.local.httpserver import Request, Response, Server, serve_in_thread

ROOT = Path(__file__).resolve().parents[1]
TFS_REPLY = {"outputs": {"item_ids": [["50", "7"]], "scores": [[0.9, 0.8]], "fallback": [False]}}


class FakeTFServing:
    """Answers every predict with `TFS_REPLY` and records the bodies it got."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def __call__(self, request: Request) -> Response:
        self.bodies.append(request.body)
        return Response(200, json.dumps(TFS_REPLY).encode())


@pytest.fixture
def tfs() -> Iterator[tuple[FakeTFServing, int]]:
    fake = FakeTFServing()
    server = Server(("127.0.0.1", 0), fake, name="fake-tfs")
    serve_in_thread(server)
    yield fake, server.port
    server.shutdown()
    server.drain(5.0)


def code_dir(tmp_path: Path, source: str | None, name: str = "inference.py") -> Path:
    code = tmp_path / "code"
    code.mkdir()
    if source is not None:
        (code / name).write_text(textwrap.dedent(source))
    return code


def post(front: ContainerFront, body: bytes, **headers: str) -> Response:
    given = CaseInsensitiveDict(
        {"Content-Length": str(len(body)), **{k.replace("_", "-"): v for k, v in headers.items()}}
    )
    return front(Request("POST", "/invocations", given, body))


def test_project_handler_answers_200_and_errors_as_the_container_does(tmp_path, tfs):
    fake, port = tfs
    code = tmp_path / "code"
    shutil.copytree(ROOT / "inference", code)
    front = ContainerFront(code, port)
    ok = post(front, b'{"user_id": "42", "k": 2}', Content_Type="application/json")
    assert (ok.status, ok.content_type) == (200, "application/json")
    assert json.loads(ok.body)["predictions"][0]["items"][0] == {"item_id": "50", "score": 0.9}
    assert json.loads(fake.bodies[0]) == {
        "signature_name": "serving_default",
        "inputs": {"user_id": ["42"], "k": 2},
    }
    refused = post(front, b'{"user_id": 42}', Content_Type="application/json")
    assert (refused.status, refused.content_type) == (500, "application/json")
    outer = json.loads(refused.body)
    assert list(outer) == ["error"]
    assert json.loads(outer["error"]) == {
        "error": "user_id must be a string, got 42",
        "field": "user_id",
        "status": 400,
    }
    again = post(front, b'{"user_id": "7", "k": 1}')
    assert again.status == 200, "the front keeps serving after a refusal"


def test_input_and_output_handlers_are_chained_through_tf_serving(tmp_path, tfs):
    fake, port = tfs
    source = """
        import json

        def input_handler(data, context):
            return json.dumps({"inputs": {"user_id": [data.read().decode()]}})

        def output_handler(response, context):
            return response.content, "application/x-custom"
    """
    front = ContainerFront(code_dir(tmp_path, source), port)
    answer = post(front, b"42")
    assert (answer.status, answer.content_type) == (200, "application/x-custom")
    assert json.loads(answer.body) == TFS_REPLY
    assert json.loads(fake.bodies[0]) == {"inputs": {"user_id": ["42"]}}


def test_without_inference_py_the_body_goes_to_tf_serving_unchanged(tmp_path, tfs):
    fake, port = tfs
    front = ContainerFront(code_dir(tmp_path, None), port)
    answer = post(front, b'{"instances": [1]}', Accept="application/json")
    assert answer.status == 200 and json.loads(answer.body) == TFS_REPLY
    assert fake.bodies == [b'{"instances": [1]}']


def test_a_script_without_handlers_fails_at_start(tmp_path, tfs):
    with pytest.raises(NotImplementedError, match="Handlers are not implemented correctly"):
        ContainerFront(code_dir(tmp_path, "def input_handler(data, context):\n    return data\n"), tfs[1])


def test_context_fields_and_custom_attributes(tmp_path, tfs):
    source = """
        import json

        def handler(data, context):
            return json.dumps(context._asdict()), "application/json"
    """
    front = ContainerFront(code_dir(tmp_path, source), 8501)
    plain = json.loads(post(front, b"{}").body)
    assert plain == {
        "model_name": None,
        "model_version": None,
        "method": None,
        "rest_uri": "http://localhost:8501/v1/models/model:predict",
        "grpc_port": None,
        "channel": None,
        "custom_attributes": None,
        "request_content_type": "application/json",
        "accept_header": "application/json",
        "content_length": 2,
    }
    attributes = "tfs-model-name=other,tfs-model-version=2,tfs-method=classify,trace=abc"
    custom = json.loads(
        post(
            front,
            b"42\n",
            Content_Type="text/csv",
            Accept="application/jsonlines",
            X_Amzn_SageMaker_Custom_Attributes=attributes,
        ).body
    )
    assert custom["rest_uri"] == "http://localhost:8501/v1/models/other/versions/2:classify"
    assert (custom["model_name"], custom["model_version"], custom["method"]) == ("other", "2", "classify")
    assert custom["custom_attributes"] == attributes
    assert (custom["request_content_type"], custom["accept_header"]) == ("text/csv", "application/jsonlines")


def test_a_handler_returning_a_bad_body_is_a_500(tmp_path):
    front = ContainerFront(
        code_dir(tmp_path, "def handler(data, context):\n    return {'a': 1}, 'application/json'\n"), 1
    )
    answer = post(front, b"{}")
    assert answer.status == 500 and "dict" in json.loads(answer.body)["error"]


def test_ping_and_unknown_paths(tmp_path):
    front = ContainerFront(code_dir(tmp_path, None), 1)
    ping = front(Request("GET", "/ping", {}, b""))
    assert (ping.status, ping.body) == (200, b"")
    assert front(Request("GET", "/invocations", {}, b"")).status == 405
    missing = front(Request("GET", "/models", {}, b""))
    assert (missing.status, json.loads(missing.body)) == (404, {"error": "Not Found"})


def test_code_lib_is_importable(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = code_dir(
        tmp_path,
        "from helper_for_test import VALUE\n\ndef handler(data, context):\n    return VALUE, 'text/plain'\n",
    )
    (code / "lib").mkdir()
    (code / "lib" / "helper_for_test.py").write_text("VALUE = 'from lib'\n")
    assert post(ContainerFront(code, 1), b"").body == b"from lib"


def test_tfs_attribute_parsing():
    assert tfs_attributes(None) == {}
    assert tfs_attributes("a=1, tfs-model-name=m ,tfs-method=regress") == {
        "tfs-model-name": "m",
        "tfs-method": "regress",
    }
    assert rest_uri(9, {}, "model") == "http://localhost:9/v1/models/model:predict"
