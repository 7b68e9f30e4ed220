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


def test_ncf_history_is_folded_in_and_answered_as_the_exported_model_answers(
    ncf_served: Any, trained_model: Path
) -> None:
    """The handler returns the NCF export's own fold-in answer, with the history excluded and reported."""
    import tensorflow as tf

    history = ["item-1", "no-such-item", "item-5", "item-9"]
    answer, _ = invoke(ncf_served, {"user_id": "new-user", "history": history, "k": 4})
    prediction = answer["predictions"][0]
    signature = tf.saved_model.load(str(trained_model / "1")).signatures["recommend_from_history"]
    direct = signature(user_id=tf.constant(["new-user"]), history=tf.constant([history]), k=tf.constant(4))
    assert [entry["item_id"] for entry in prediction["items"]] == direct["item_ids"].numpy()[0].astype(
        str
    ).tolist()
    assert prediction["fallback"] is False and prediction["ignored_history"] == ["no-such-item"]
    assert not {"item-1", "item-5", "item-9"} & {entry["item_id"] for entry in prediction["items"]}
    plain, _ = invoke(ncf_served, {"user_id": "new-user", "k": 4})
    assert plain["predictions"][0]["fallback"] is True  # without the history: popularity
    assert plain["predictions"][0]["items"] != prediction["items"]


def test_ncf_empty_history_of_a_known_user_is_the_plain_answer(ncf_served: Any) -> None:
    lines = "".join(
        json.dumps(r) + "\n" for r in ({"user_id": "u1", "history": [], "k": 5}, {"user_id": "u1", "k": 5})
    )
    text, _ = invoke(ncf_served, lines, "application/jsonlines", "application/jsonlines")
    folded, plain = (json.loads(line) for line in text.splitlines())
    assert folded["items"] == plain["items"] and folded["ignored_history"] == []


def test_a_model_exported_without_the_history_signature_refuses_history_clearly(
    inference: Any,  # noqa: F811
    trained_model: Path,
) -> None:
    older_export = SavedModelServable(open_model(trained_model))
    del older_export.signatures["recommend_from_history"]  # as exported before history requests existed
    inference.SESSION.mount("http://localhost:8501/", InProcessAdapter(older_export))
    try:
        error = refusal(inference, {"user_id": "u1", "history": ["item-1"]})
        answer, _ = invoke(inference, {"user_id": "u1", "k": 2})
    finally:
        inference.SESSION.adapters.pop("http://localhost:8501/")
    assert error["status"] == 400 and error["field"] == "history" and "retrain" in error["error"]
    assert len(answer["predictions"][0]["items"]) == 2  # everything else still answers


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


@pytest.mark.slow
def test_ncf_history_request_through_the_local_https_endpoint(trained_model: Path, tmp_path: Path) -> None:
    from serving_fixtures import runtime_client

    from deploy.local.process import local_endpoint_process

    with local_endpoint_process(trained_model, tmp_path / "tls") as endpoint:
        client = runtime_client(endpoint.url, endpoint.cert)
        body = json.dumps({"user_id": "someone-new", "history": ["item-2", "item-6", "zz"], "k": 3})
        answer = client.invoke_endpoint(EndpointName="local", Body=body, ContentType="application/json")
        prediction = json.loads(answer["Body"].read())["predictions"][0]
        assert endpoint.stop() == 0, endpoint.text()
    items = [entry["item_id"] for entry in prediction["items"]]
    assert prediction["fallback"] is False and prediction["ignored_history"] == ["zz"] and len(items) == 3
    assert not {"item-2", "item-6"} & set(items)
