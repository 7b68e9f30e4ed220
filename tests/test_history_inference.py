"""`history` requests (real-time events) through inference.py, answered by the real exported models.

TF Serving is the local stand-in (`deploy.local.tfserving_standin`) serving the SavedModel of conftest's
trained sasrec (`sasrec_run`) or NCF model (`trained_model`), mounted on the handler's session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_inference import inference, invoke, refusal  # noqa: F401  (inference is a fixture)

from deploy.local.inprocess import InProcessAdapter
from deploy.local.model_artifact import open_model
from deploy.local.tfserving_standin import SavedModelServable


def serve(inference: Any, model_dir: Path) -> Any:  # noqa: F811
    inference.SESSION.mount(
        "http://localhost:8501/", InProcessAdapter(SavedModelServable(open_model(model_dir)))
    )


@pytest.fixture
def sasrec_served(inference: Any, sasrec_run: Path) -> Any:  # noqa: F811
    serve(inference, sasrec_run / "model")
    yield inference
    inference.SESSION.adapters.pop("http://localhost:8501/")


@pytest.fixture
def ncf_served(inference: Any, trained_model: Path) -> Any:  # noqa: F811
    serve(inference, trained_model)
    yield inference
    inference.SESSION.adapters.pop("http://localhost:8501/")


def test_history_of_a_new_user_drives_the_answer_and_unknown_ids_are_reported(sasrec_served: Any) -> None:
    body = {"user_id": "new-user", "history": ["item-7", "no-such-item", "item-8"], "k": 3}
    answer, _ = invoke(sasrec_served, body)
    prediction = answer["predictions"][0]
    ids = [entry["item_id"] for entry in prediction["items"]]
    assert ids[0] == "item-9" and not {"item-7", "item-8"} & set(ids)
    assert prediction["fallback"] is False and prediction["ignored_history"] == ["no-such-item"]


def test_json_lines_batch_mixes_history_and_plain_requests(sasrec_served: Any) -> None:
    requests = [
        {"user_id": "u1", "history": ["item-2"], "k": 2},
        {"user_id": "u1", "k": 2},
        {"user_id": "x", "history": []},
    ]
    lines = "".join(json.dumps(request) + "\n" for request in requests)
    text, _ = invoke(sasrec_served, lines, "application/jsonlines", "application/jsonlines")
    first, plain, empty = (json.loads(line) for line in text.splitlines())
    assert first["items"][0]["item_id"] == "item-3" and first["ignored_history"] == []
    assert "ignored_history" not in plain and len(plain["items"]) == 2
    assert empty["fallback"] is True  # an unknown user without known events: popularity


@pytest.mark.parametrize(
    ("history", "status"),
    [("item-1", 400), ([1, 2], 400), ([""], 400), (["item-1"] * 1001, 413)],
)
def test_bad_histories_get_structured_errors(sasrec_served: Any, history: Any, status: int) -> None:
    error = refusal(sasrec_served, {"user_id": "u1", "history": history})
    assert error["field"] == "history" and error["status"] == status


def test_history_with_exclusions_is_refused(sasrec_served: Any) -> None:
    error = refusal(sasrec_served, {"user_id": "u1", "history": ["item-1"], "exclude": ["item-2"]})
    assert error["field"] == "history" and "cannot be combined" in error["error"]


def test_ncf_models_refuse_history_clearly(ncf_served: Any) -> None:
    error = refusal(ncf_served, {"user_id": "u1", "history": ["item-1"]})
    assert (
        error
        == {
            "error": error["error"],
            "field": "history",
            "status": 400,
        }
        and "model_type sasrec" in error["error"]
    )


@pytest.mark.slow
def test_history_request_through_the_local_https_endpoint(sasrec_run: Path, tmp_path: Path) -> None:
    from serving_fixtures import runtime_client

    from deploy.local.process import local_endpoint_process

    with local_endpoint_process(sasrec_run / "model", tmp_path / "tls") as endpoint:
        client = runtime_client(endpoint.url, endpoint.cert)
        body = json.dumps({"user_id": "someone-new", "history": ["item-12", "item-13"], "k": 2})
        answer = client.invoke_endpoint(EndpointName="local", Body=body, ContentType="application/json")
        prediction = json.loads(answer["Body"].read())["predictions"][0]
        assert endpoint.stop() == 0, endpoint.text()
    assert prediction["items"][0]["item_id"] == "item-14" and prediction["fallback"] is False
