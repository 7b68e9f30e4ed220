"""inference.py's similar_items / similar_users requests, with a fake container context and a fake TF Serving.

The fake answers like the exported model's similarity signatures through TF Serving's REST API (columnar
form): 4 items (so at most 3 neighbours) and 12 users, "" / 0.0 for unknown ids, `known` false.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_inference import inference, invoke, refusal  # noqa: F401  (inference is a fixture)

from deploy.local.httpserver import Request, Response
from deploy.local.inprocess import InProcessAdapter

ITEMS = ["50", "7", "3", "172"]
USERS = ["42", *map(str, range(1, 12))]  # 12 users: the default k=10 fits


class FakeSimilarity:
    """Records predict bodies; each known id's neighbours are the other ids in catalog order."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, request: Request) -> Response:
        body = json.loads(request.body)
        self.calls.append(body)
        name = body["signature_name"]
        if name not in ("similar_items", "similar_users"):
            rows = len(body["inputs"]["user_id"])
            outputs = {"item_ids": [["50"]] * rows, "scores": [[0.5]] * rows, "fallback": [False] * rows}
            return Response(200, json.dumps({"outputs": outputs}).encode())
        key, catalog = ("item_id", ITEMS) if name == "similar_items" else ("user_id", USERS)
        width = min(body["inputs"]["k"], len(catalog) - 1)
        ids, scores = [], []
        for query in body["inputs"][key]:
            others = [c for c in catalog if c != query][:width] if query in catalog else [""] * width
            ids.append(others)
            scores.append([0.9 - 0.1 * i if o else 0.0 for i, o in enumerate(others)])
        outputs = {f"{key}s": ids, "scores": scores, "known": [q in catalog for q in body["inputs"][key]]}
        return Response(200, json.dumps({"outputs": outputs}).encode())


@pytest.fixture
def tfs(inference: Any) -> Any:  # noqa: F811
    fake = FakeSimilarity()
    inference.SESSION.mount("http://localhost:8501/", InProcessAdapter(fake))
    yield fake
    inference.SESSION.adapters.pop("http://localhost:8501/")


def test_similar_items_request_and_response(inference, tfs):  # noqa: F811
    answer, _ = invoke(inference, {"signature": "similar_items", "item_id": "50", "k": 2})
    assert tfs.calls == [{"signature_name": "similar_items", "inputs": {"item_id": ["50"], "k": 2}}]
    assert answer == {
        "predictions": [
            {
                "item_id": "50",
                "similar": [{"item_id": "7", "score": 0.9}, {"item_id": "3", "score": 0.8}],
            }
        ]
    }


def test_similar_users_request_and_response(inference, tfs):  # noqa: F811
    answer, _ = invoke(inference, {"signature": "similar_users", "user_id": "42", "k": 3})
    assert tfs.calls[0]["signature_name"] == "similar_users"
    (prediction,) = answer["predictions"]
    assert prediction["user_id"] == "42"
    assert [n["user_id"] for n in prediction["similar"]] == ["1", "2", "3"]


def test_mixed_batch_makes_one_call_per_signature_and_keeps_order(inference, tfs):  # noqa: F811
    body = {
        "signature": "similar_items",
        "instances": [
            {"item_id": "7", "k": 1},
            {"signature": "recommend", "user_id": "42", "k": 1},
            {"item_id": "172", "k": 3},
            {"signature": "similar_users", "user_id": "1", "k": 2},
        ],
    }
    answer, _ = invoke(inference, body)
    assert sorted(c["signature_name"] for c in tfs.calls) == [
        "serving_default",
        "similar_items",
        "similar_users",
    ]
    items_call = next(c for c in tfs.calls if c["signature_name"] == "similar_items")
    assert items_call["inputs"] == {"item_id": ["7", "172"], "k": 3}
    first, second, third, fourth = answer["predictions"]
    assert first == {"item_id": "7", "similar": [{"item_id": "50", "score": 0.9}]}
    assert second["user_id"] == "42" and "items" in second
    assert [n["item_id"] for n in third["similar"]] == ["50", "7", "3"]
    assert fourth["user_id"] == "1" and len(fourth["similar"]) == 2


def test_json_lines_and_the_csv_convention(inference, tfs):  # noqa: F811
    text, _ = invoke(
        inference,
        '{"signature": "similar_items", "item_id": "3", "k": 1}\n'
        '{"signature": "similar_users", "user_id": "2"}\n',
        "application/jsonlines",
        "application/jsonlines",
    )
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(p.get("item_id"), p.get("user_id"), len(p["similar"])) for p in lines] == [
        ("3", None, 1),
        (None, "2", 10),
    ]
    answer, _ = invoke(inference, "50,2,similar_items\n42,,similar_users\n42,1\n", "text/csv")
    calls = {c["signature_name"]: c["inputs"] for c in tfs.calls[1:]}
    assert calls == {
        "similar_items": {"item_id": ["50"], "k": 2},
        "similar_users": {"user_id": ["42"], "k": 10},
        "serving_default": {"user_id": ["42"], "k": 1},
    }
    assert [len(p.get("similar", p.get("items"))) for p in answer["predictions"]] == [2, 10, 1]


def test_unknown_id_is_a_404_naming_it(inference, tfs):  # noqa: F811
    body = {"signature": "similar_items", "instances": [{"item_id": "50"}, {"item_id": "no-such-movie"}]}
    error = refusal(inference, body)
    assert error == {
        "error": "instances[1]: unknown item_id 'no-such-movie': the model has no such item, so it has no "
        "similar items",
        "field": "item_id",
        "status": 404,
    }
    single = refusal(inference, {"signature": "similar_users", "user_id": "nobody"})
    assert single["field"] == "user_id" and single["status"] == 404 and "'nobody'" in single["error"]


def test_k_beyond_the_other_rows_names_their_number(inference, tfs):  # noqa: F811
    error = refusal(inference, {"signature": "similar_items", "item_id": "50", "k": 5})
    assert error == {"error": "k=5 is larger than the number of other items (3)", "field": "k", "status": 400}


BAD = [
    ('{"signature": "similar_items", "k": 3}', "application/json", "item_id"),
    ('{"signature": "similar_items", "item_id": ""}', "application/json", "item_id"),
    ('{"signature": "similar_items", "item_id": 50}', "application/json", "item_id"),
    ('{"signature": "similar_items", "user_id": "42"}', "application/json", "user_id"),
    ('{"signature": "similar_users", "user_id": "42", "exclude": ["1"]}', "application/json", "exclude"),
    ('{"signature": "similar_items", "item_id": "50", "k": 0}', "application/json", "k"),
    ('{"signature": "similar_items", "item_id": "50", "k": 101}', "application/json", "k"),
    ('{"signature": "similar_items", "item_id": "50", "k": "3"}', "application/json", "k"),
    ('{"signature": "similar", "item_id": "50"}', "application/json", "signature"),
    ('{"signature": ["similar_items"], "item_id": "50"}', "application/json", "signature"),
    ("50,3,score\n", "text/csv", "signature"),
    ("50,3,similar\n", "text/csv", "signature"),
    (",3,similar_items\n", "text/csv", "item_id"),
    ("50,x,similar_items\n", "text/csv", "k"),
]


@pytest.mark.parametrize(("body", "content_type", "field"), BAD)
def test_bad_similarity_requests_are_refused_before_any_model_call(
    inference,  # noqa: F811
    tfs,
    body,
    content_type,
    field,
):
    error = refusal(inference, body, content_type)
    assert (error["field"], error["status"]) == (field, 400)
    assert tfs.calls == []
