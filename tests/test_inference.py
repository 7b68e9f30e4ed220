"""inference/inference.py with a fake container context and recorded TF Serving responses (no TensorFlow).

The handler is imported exactly as the serving container imports it (by path, unregistered), and TF
Serving is replaced by an in-process transport on the handler's `SESSION` that records each request
and answers with a response captured from the real model server's REST API.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from deploy.local.container_server import Context, import_inference
from deploy.local.httpserver import Request, Response
from deploy.local.inprocess import InProcessAdapter

REST_URI = "http://localhost:8501/v1/models/model:predict"
ROOT = Path(__file__).resolve().parents[1]

# Recorded from TF Serving's REST API (columnar form) for a 3-item catalog and k=3 ("" = nothing eligible
# left). The fake answers a request with the first rows and min(k, 3) columns: TF Serving's answer for it.
RECORDED = {
    "serving_default": {
        "outputs": {
            "item_ids": [["50", "7", "3"], ["9", "50", "7"]],
            "scores": [[0.93, 0.81, 0.5], [0.12, 0.11, 0.05]],
            "fallback": [False, True],
        }
    },
    "recommend_excluding": {
        "outputs": {"item_ids": [["3", "", ""]], "scores": [[0.5, 0.0, 0.0]], "fallback": [False]}
    },
    "recommend_with_seen": {
        "outputs": {"item_ids": [["1", "50"]], "scores": [[0.99, 0.93]], "fallback": [False]}
    },
    "score": {"outputs": {"score": [0.93, 0.0], "fallback": [False, True]}},
}
TFS_STACK_DUMP = {
    "error": "indices[0] = 7 is not in [0, 5)\n\t [[{{node GatherV2}}]]\n\t"
    "StatefulPartitionedCall/StatefulPartitionedCall"
}


@pytest.fixture(scope="module")
def inference() -> Any:
    return import_inference(ROOT / "inference" / "inference.py")


class FakeTFServing:
    """Records predict bodies and answers with `RECORDED[signature]` (or a custom reply)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.reply: Callable[[dict[str, Any]], Response] = self.recorded

    def recorded(self, body: dict[str, Any]) -> Response:
        outputs = RECORDED[body["signature_name"]]["outputs"]
        rows, k = len(body["inputs"]["user_id"]), body["inputs"].get("k")
        sliced = {
            name: [row[:k] if isinstance(row, list) else row for row in value[:rows]]
            for name, value in outputs.items()
        }
        return Response(200, json.dumps({"outputs": sliced}).encode())

    def __call__(self, request: Request) -> Response:
        body = json.loads(request.body)
        self.calls.append(body)
        return self.reply(body)


@pytest.fixture
def tfs(inference: Any) -> Any:
    fake = FakeTFServing()
    inference.SESSION.mount("http://localhost:8501/", InProcessAdapter(fake))
    yield fake
    inference.SESSION.adapters.pop("http://localhost:8501/")


def catalog_of_100(body: dict[str, Any]) -> Response:
    """TF Serving's answer shape for a 100-item catalog: k columns per user."""
    rows, k = len(body["inputs"]["user_id"]), body["inputs"]["k"]
    outputs = {
        "item_ids": [[str(i) for i in range(k)]] * rows,
        "scores": [[1.0 / (i + 1) for i in range(k)]] * rows,
        "fallback": [False] * rows,
    }
    return Response(200, json.dumps({"outputs": outputs}).encode())


def context(
    content_type: str = "application/json", accept: str = "application/json", length: int | None = None
):
    return Context(None, None, None, REST_URI, "9000", None, None, content_type, accept, length)


def invoke(
    inference: Any, body: Any, content_type: str = "application/json", accept: str = "application/json"
):
    raw = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
    text, media = inference.handler(io.BytesIO(raw), context(content_type, accept, len(raw)))
    return (json.loads(text) if media == "application/json" else text), media


def refusal(
    inference: Any, body: Any, content_type: str = "application/json", accept: str = "application/json"
):
    with pytest.raises(inference.InferenceError) as caught:
        invoke(inference, body, content_type, accept)
    return json.loads(str(caught.value))


# ----------------------------------------------------------------------------------------- happy paths


def test_single_request_calls_serving_default_in_columnar_form(inference, tfs):
    tfs.reply = lambda body: Response(
        200,
        json.dumps(
            {"outputs": {"item_ids": [["50", "7"]], "scores": [[0.93, 0.81]], "fallback": [False]}}
        ).encode(),
    )
    answer, media = invoke(inference, {"user_id": "42", "k": 2})
    assert tfs.calls == [{"signature_name": "serving_default", "inputs": {"user_id": ["42"], "k": 2}}]
    assert media == "application/json"
    assert answer == {
        "predictions": [
            {
                "user_id": "42",
                "items": [{"item_id": "50", "score": 0.93}, {"item_id": "7", "score": 0.81}],
                "fallback": False,
            }
        ]
    }


def test_batch_asks_for_the_largest_k_and_cuts_each_user_to_its_own(inference, tfs):
    answer, _ = invoke(inference, {"instances": [{"user_id": "42", "k": 2}, {"user_id": "nobody", "k": 3}]})
    assert tfs.calls == [
        {"signature_name": "serving_default", "inputs": {"user_id": ["42", "nobody"], "k": 3}}
    ]
    first, second = answer["predictions"]
    assert [i["item_id"] for i in first["items"]] == ["50", "7"] and first["fallback"] is False
    assert [i["item_id"] for i in second["items"]] == ["9", "50", "7"] and second["fallback"] is True
    assert all(isinstance(i["score"], float) for i in first["items"] + second["items"])


def test_default_k_comes_from_the_settings(inference, tfs):
    tfs.reply = catalog_of_100
    invoke(inference, {"user_id": "42"})
    assert tfs.calls[0]["inputs"]["k"] == inference.SETTINGS.default_k == 10


def test_exclusion_list_uses_recommend_excluding_and_drops_empty_tail_ids(inference, tfs):
    answer, _ = invoke(inference, {"user_id": "42", "k": 3, "exclude": ["50", "7"]})
    assert tfs.calls == [
        {
            "signature_name": "recommend_excluding",
            "inputs": {"user_id": ["42"], "k": 3, "exclude": [["50", "7"]]},
        }
    ]
    assert answer["predictions"][0]["items"] == [{"item_id": "3", "score": 0.5}]


def test_include_seen_uses_recommend_with_seen_with_padded_exclude(inference, tfs):
    invoke(inference, {"user_id": "42", "k": 2, "exclude_seen": False})
    assert tfs.calls == [
        {"signature_name": "recommend_with_seen", "inputs": {"user_id": ["42"], "k": 2, "exclude": [[""]]}}
    ]


def test_mixed_batch_makes_one_call_per_signature_and_keeps_request_order(inference, tfs):
    def reply(body: dict[str, Any]) -> Response:
        tag = {"serving_default": "a", "recommend_with_seen": "b"}[body["signature_name"]]
        rows = len(body["inputs"]["user_id"])
        outputs = {"item_ids": [[tag]] * rows, "scores": [[0.5]] * rows, "fallback": [False] * rows}
        return Response(200, json.dumps({"outputs": outputs}).encode())

    tfs.reply = reply
    instances = [
        {"user_id": "1", "k": 1},
        {"user_id": "2", "k": 1, "exclude_seen": False},
        {"user_id": "3", "k": 1},
    ]
    answer, _ = invoke(inference, {"instances": instances})
    assert sorted(c["signature_name"] for c in tfs.calls) == ["recommend_with_seen", "serving_default"]
    assert [(p["user_id"], p["items"][0]["item_id"]) for p in answer["predictions"]] == [
        ("1", "a"),
        ("2", "b"),
        ("3", "a"),
    ]


def test_pair_scoring(inference, tfs):
    body = {
        "signature": "score",
        "instances": [{"user_id": "42", "item_id": "50"}, {"user_id": "42", "item_id": "zz"}],
    }
    answer, _ = invoke(inference, body)
    assert tfs.calls == [
        {"signature_name": "score", "inputs": {"user_id": ["42", "42"], "item_id": ["50", "zz"]}}
    ]
    assert answer["predictions"] == [
        {"user_id": "42", "item_id": "50", "score": 0.93, "fallback": False},
        {"user_id": "42", "item_id": "zz", "score": 0.0, "fallback": True},
    ]


def test_json_lines_in_and_out(inference, tfs):
    body = '{"user_id": "42", "k": 2}\n\n{"user_id": "nobody", "k": 1}\n'
    text, media = invoke(inference, body, "application/jsonlines", "application/jsonlines")
    assert media == "application/jsonlines"
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(p["user_id"], len(p["items"])) for p in lines] == [("42", 2), ("nobody", 1)]


def test_csv_user_and_optional_k(inference, tfs):
    tfs.reply = catalog_of_100
    answer, _ = invoke(inference, "42,2\nnobody\n", "text/csv; charset=utf-8")
    assert tfs.calls[0]["inputs"] == {"user_id": ["42", "nobody"], "k": 10}
    assert [len(p["items"]) for p in answer["predictions"]] == [2, 10]


@pytest.mark.parametrize("accept", ["*/*", "application/json; charset=utf-8", "text/html, application/json"])
def test_accept_variants_answer_json(inference, tfs, accept):
    _, media = invoke(inference, {"user_id": "42", "k": 1}, accept=accept)
    assert media == "application/json"


# ------------------------------------------------------------------------------------------ bad input

BAD_INPUTS = [
    ("{not json", "application/json", "application/json", "body", 400),
    ("", "application/json", "application/json", "body", 400),
    ('["42"]', "application/json", "application/json", "body", 400),
    ('{"user_id": "42"}', "text/plain", "application/json", "content_type", 415),
    ('{"user_id": "42"}', "application/json", "text/csv", "accept", 406),
    ("{}", "application/json", "application/json", "user_id", 400),
    ('{"user_id": ""}', "application/json", "application/json", "user_id", 400),
    ('{"user_id": 42}', "application/json", "application/json", "user_id", 400),
    ('{"user_id": "42", "k": "10"}', "application/json", "application/json", "k", 400),
    ('{"user_id": "42", "k": 1.5}', "application/json", "application/json", "k", 400),
    ('{"user_id": "42", "k": true}', "application/json", "application/json", "k", 400),
    ('{"user_id": "42", "k": 0}', "application/json", "application/json", "k", 400),
    ('{"user_id": "42", "k": 101}', "application/json", "application/json", "k", 400),
    ('{"user_id": "42", "exclude": "50"}', "application/json", "application/json", "exclude", 400),
    ('{"user_id": "42", "exclude": [50]}', "application/json", "application/json", "exclude", 400),
    ('{"user_id": "42", "exclude_seen": "no"}', "application/json", "application/json", "exclude_seen", 400),
    ('{"user_id": "42", "exlude": []}', "application/json", "application/json", "exlude", 400),
    ('{"user_id": "42", "signature": "explain"}', "application/json", "application/json", "signature", 400),
    ('{"signature": "score", "user_id": "42"}', "application/json", "application/json", "item_id", 400),
    (
        '{"signature": "score", "user_id": "42", "item_id": "1", "k": 3}',
        "application/json",
        "application/json",
        "k",
        400,
    ),
    ('{"instances": {"user_id": "42"}}', "application/json", "application/json", "instances", 400),
    ('{"instances": []}', "application/json", "application/json", "instances", 400),
    ('{"instances": ["42"]}', "application/json", "application/json", "instances", 400),
    ('{"instances": [{"user_id": "1"}], "k": 3}', "application/json", "application/json", "k", 400),
    ('{"user_id": "1"}\n{"user_id": 2}\n', "application/jsonlines", "application/json", "user_id", 400),
    ('{"user_id": "1"}\n{oops\n', "application/jsonlines", "application/json", "body", 400),
    ("42,ten\n", "text/csv", "application/json", "k", 400),
    ("42,1,recommend,extra\n", "text/csv", "application/json", "body", 400),
    (",3\n", "text/csv", "application/json", "user_id", 400),
    ("\n\n", "text/csv", "application/json", "instances", 400),
    (b"\xff\xfe", "application/json", "application/json", "body", 400),
]


@pytest.mark.parametrize(("body", "content_type", "accept", "field", "status"), BAD_INPUTS)
def test_bad_input_is_refused_with_a_structured_error_and_no_model_call(
    inference, tfs, body, content_type, accept, field, status
):
    error = refusal(inference, body, content_type, accept)
    assert error["field"] == field
    assert error["status"] == status
    assert error["error"] and "Traceback" not in error["error"]
    assert tfs.calls == []


def test_batch_errors_name_the_instance(inference, tfs):
    error = refusal(inference, {"instances": [{"user_id": "1"}, {"user_id": "2", "k": 0}]})
    assert error["field"] == "k" and error["error"].startswith("instances[1]: ")


def test_csv_and_json_lines_errors_name_the_line(inference, tfs):
    assert refusal(inference, "1\n2,x\n", "text/csv")["error"].startswith("line 2: ")
    assert refusal(inference, '{"user_id": "1"}\n\n{}\n', "application/jsonlines")["error"].startswith(
        "line 3: "
    )


def test_too_many_instances_and_too_large_bodies(inference, tfs):
    limits = inference.Settings(max_instances=2, max_body_bytes=64)
    many = json.dumps({"instances": [{"user_id": str(i)} for i in range(3)]}).encode()
    with pytest.raises(inference.InferenceError) as caught:
        inference.predict(io.BytesIO(many), context(length=None), limits)
    assert (caught.value.field, caught.value.status) == ("body", 413)
    small = json.dumps({"instances": [{"user_id": "1"}, {"user_id": "2"}, {"user_id": "3"}]}).encode()
    with pytest.raises(inference.InferenceError) as caught:
        inference.predict(io.BytesIO(small), context(), inference.Settings(max_instances=2))
    assert (caught.value.field, caught.value.status) == ("instances", 413)
    declared = context(length=10**9)
    with pytest.raises(inference.InferenceError) as caught:
        inference.predict(io.BytesIO(b"{}"), declared, limits)
    assert (caught.value.field, caught.value.status) == ("body", 413)
    assert tfs.calls == []


def echo_users(body: dict[str, Any]) -> Response:
    """A 3-item catalog whose answer names the user: item `<user>/<rank>`."""
    users, k = body["inputs"]["user_id"], min(body["inputs"]["k"], 3)
    outputs = {
        "item_ids": [[f"{user}/{rank}" for rank in range(k)] for user in users],
        "scores": [[1.0 - rank / 10 for rank in range(k)] for _ in users],
        "fallback": [user.startswith("new") for user in users],
    }
    return Response(200, json.dumps({"outputs": outputs}).encode())


def test_line_bodies_ignore_max_instances_and_reach_tf_serving_in_chunks(inference, tfs):
    """Batch Transform's MultiRecord bodies: any number of lines, one answer line per line, in order."""
    tfs.reply = echo_users
    settings = inference.Settings(max_instances=2, tfs_chunk_size=3)
    users = [f"u{i}" if i % 4 else f"new{i}" for i in range(11)]
    lines = [
        json.dumps({"user_id": u, "k": 1 + i % 3, **({"exclude": ["x"]} if i % 5 == 1 else {})})
        for i, u in enumerate(users)
    ]
    body = ("\n".join(lines) + "\n\n").encode()
    text, media = inference.predict(
        io.BytesIO(body), context("application/jsonlines", "application/jsonlines"), settings
    )
    answers = [json.loads(line) for line in text.splitlines()]
    assert media == "application/jsonlines" and [a["user_id"] for a in answers] == users
    for i, answer in enumerate(answers):
        assert [item["item_id"] for item in answer["items"]] == [f"{users[i]}/{r}" for r in range(1 + i % 3)]
        assert answer["fallback"] is users[i].startswith("new")
    sizes = [(call["signature_name"], len(call["inputs"]["user_id"])) for call in tfs.calls]
    # All 11 exclude seen items: chunks of 3; a chunk with an exclusion list (users 1, 6) needs the other
    # signature.
    assert sizes == [
        ("recommend_excluding", 3),
        ("serving_default", 3),
        ("recommend_excluding", 3),
        ("serving_default", 2),
    ]
    tfs.calls.clear()
    rows, _ = inference.predict(io.BytesIO(b"a,2\nb,3\nc,1\n"), context("text/csv"), settings)
    assert [p["user_id"] for p in json.loads(rows)["predictions"]] == ["a", "b", "c"]
    assert [len(call["inputs"]["user_id"]) for call in tfs.calls] == [3]


def test_a_refusal_in_a_later_chunk_names_the_instance_in_the_whole_body(inference, tfs):
    tfs.reply = echo_users
    lines = "".join(json.dumps({"user_id": f"u{i}", "k": 5 if i == 7 else 2}) + "\n" for i in range(9))
    with pytest.raises(inference.InferenceError) as caught:
        inference.predict(
            io.BytesIO(lines.encode()),
            context("application/jsonlines"),
            inference.Settings(tfs_chunk_size=4),
        )
    assert str(caught.value) == json.dumps(
        {"error": "instances[7]: k=5 is larger than the catalog (3 items)", "field": "k", "status": 400}
    )
    bad_line = lines.replace('{"user_id": "u8", "k": 2}', '{"user_id": 8}')
    with pytest.raises(inference.InferenceError, match="line 9: user_id must be a string"):
        inference.predict(
            io.BytesIO(bad_line.encode()), context("application/jsonlines"), inference.Settings()
        )


def test_k_larger_than_the_catalog_names_k_and_the_catalog_size(inference, tfs):
    error = refusal(inference, {"user_id": "42", "k": 5})  # the recorded model has 3 items
    assert error == {"error": "k=5 is larger than the catalog (3 items)", "field": "k", "status": 400}


# ------------------------------------------------------------------------------ TF Serving failures


def event_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The refusal events written to stderr so far: each line must be a whole JSON object."""
    return [json.loads(line) for line in capsys.readouterr().err.splitlines()]


def test_tf_serving_error_is_logged_but_not_returned(inference, tfs, caplog, capsys):
    tfs.reply = lambda body: Response(400, json.dumps(TFS_STACK_DUMP).encode())
    with caplog.at_level(logging.WARNING, logger="ncf.inference"):
        error = refusal(inference, {"user_id": "42", "k": 3})
    assert error == {"error": "the model server failed (HTTP 400)", "field": None, "status": 502}
    assert "GatherV2" in caplog.text
    assert event_lines(capsys) == [{"event": "server_error", **error}]


@pytest.mark.parametrize(
    "outputs",
    [
        "not json",
        json.dumps({"predictions": []}),
        json.dumps({"outputs": {"item_ids": [["1"]], "scores": [[0.1]]}}),
        json.dumps({"outputs": {"item_ids": [["1"], ["2"]], "scores": [[0.1]], "fallback": [False]}}),
        json.dumps({"outputs": {"item_ids": [["1", "2"]], "scores": [[0.1]], "fallback": [False]}}),
    ],
)
def test_malformed_model_output_is_a_server_error(inference, tfs, outputs):
    tfs.reply = lambda body: Response(200, outputs.encode())
    error = refusal(inference, {"user_id": "42", "k": 1})
    assert error == {"error": "the model returned an unexpected response", "field": None, "status": 502}


def test_unreachable_and_slow_tf_serving(inference, tfs):
    def down(body: dict[str, Any]) -> Response:
        raise requests.ConnectionError("connection refused")

    tfs.reply = down
    assert refusal(inference, {"user_id": "42"})["status"] == 503

    def slow(body: dict[str, Any]) -> Response:
        raise requests.ReadTimeout("read timed out")

    tfs.reply = slow
    assert refusal(inference, {"user_id": "42"})["status"] == 504


def test_a_bug_becomes_an_internal_error_without_details(inference, tfs, monkeypatch, caplog):
    monkeypatch.setattr(inference, "plan_calls", lambda *args: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="ncf.inference"):
        error = refusal(inference, {"user_id": "42"})
    assert error == {"error": "internal error in the inference handler", "field": None, "status": 500}
    assert "ZeroDivisionError" in caplog.text


def test_client_errors_are_logged_as_warnings(inference, tfs, capsys):
    error = refusal(inference, {"user_id": 1})
    assert event_lines(capsys) == [{"event": "client_error", **error}]


# ------------------------------------------------------------------------------------------- settings


def test_settings_from_environment(inference):
    assert inference.Settings.from_env({}) == inference.Settings()
    custom = inference.Settings.from_env(
        {"NCF_MAX_K": "20", "NCF_DEFAULT_K": "5", "NCF_TFS_TIMEOUT_S": "2.5", "NCF_TFS_CHUNK_SIZE": "250"}
    )
    assert (custom.max_k, custom.default_k, custom.tfs_timeout_s, custom.tfs_chunk_size) == (20, 5, 2.5, 250)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"NCF_MAX_K": "many"}, "NCF_MAX_K"),
        ({"NCF_MAX_INSTANCES": "0"}, "NCF_MAX_INSTANCES"),
        ({"NCF_TFS_CHUNK_SIZE": "-5"}, "NCF_TFS_CHUNK_SIZE"),
        ({"NCF_MAX_K": "5"}, "NCF_DEFAULT_K"),
    ],
)
def test_bad_settings_name_the_variable(inference, env, named):
    with pytest.raises(ValueError, match=named):
        inference.Settings.from_env(env)
