"""End to end: a tiny trained model behind the local HTTPS endpoint, invoked with boto3.

Uses the session's `trained_model` (tests/conftest.py) and serves its `model.tar.gz` the way SageMaker
would, through `python -m deploy.local` in a child process, then stops it with SIGTERM.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from serving_fixtures import runtime_client

from deploy.local.process import EndpointProcess, local_endpoint_process

pytestmark = pytest.mark.slow

CATALOG_SIZE = 40  # items in conftest's make_interactions()


@pytest.fixture(scope="module")
def seen(tiny_channels: Path) -> dict[str, set[str]]:
    """Each user's training items: what the endpoint must never recommend by default."""
    items: dict[str, set[str]] = {}
    with (tiny_channels / "train" / "part-00000.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            items.setdefault(row["user_id"], set()).add(row["item_id"])
    return items


@pytest.fixture(scope="module")
def endpoint(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointProcess]:
    archive = trained_model.parent / "model.tar.gz"
    assert archive.is_file(), "training should write model.tar.gz next to MODEL_DIR"
    with local_endpoint_process(archive, tmp_path_factory.mktemp("tls")) as running:
        yield running


@pytest.fixture(scope="module")
def client(endpoint: EndpointProcess) -> Any:
    return runtime_client(endpoint.url, endpoint.cert)


def invoke(
    client: Any, body: Any, content_type: str = "application/json", accept: str = "application/json"
) -> Any:
    data = body if isinstance(body, str) else json.dumps(body)
    answer = client.invoke_endpoint(
        EndpointName="ncf-local", Body=data, ContentType=content_type, Accept=accept
    )
    assert answer["ContentType"] == accept
    text = answer["Body"].read().decode()
    if accept == "application/jsonlines":
        return [json.loads(line) for line in text.splitlines()]
    return json.loads(text)["predictions"]


def check_recommendations(prediction: dict[str, Any], k: int, seen: dict[str, set[str]]) -> list[str]:
    items = [item["item_id"] for item in prediction["items"]]
    scores = [item["score"] for item in prediction["items"]]
    assert 0 < len(items) <= k and len(set(items)) == len(items)
    assert all(isinstance(i, str) for i in items) and all(isinstance(s, float) for s in scores)
    assert scores == sorted(scores, reverse=True)
    assert not set(items) & seen.get(prediction["user_id"], set()), "a seen item was recommended"
    return items


def test_single_user(client, seen):
    (prediction,) = invoke(client, {"user_id": "u0", "k": 5})
    assert prediction["user_id"] == "u0" and prediction["fallback"] is False
    assert len(check_recommendations(prediction, 5, seen)) == 5


def test_batch_of_every_user_never_recommends_seen_items(client, seen):
    users = sorted(seen)
    predictions = invoke(client, {"instances": [{"user_id": u, "k": 10} for u in users]})
    assert [p["user_id"] for p in predictions] == users
    for prediction in predictions:
        check_recommendations(prediction, 10, seen)


def test_json_lines_and_csv(client, seen):
    lines = invoke(
        client,
        '{"user_id": "u1", "k": 3}\n{"user_id": "u2", "k": 4}\n',
        "application/jsonlines",
        "application/jsonlines",
    )
    assert [(p["user_id"], len(p["items"])) for p in lines] == [("u1", 3), ("u2", 4)]
    rows = invoke(client, "u3,2\nu4\n", "text/csv")
    assert [(p["user_id"], len(p["items"])) for p in rows] == [("u3", 2), ("u4", 10)]
    for prediction in lines + rows:
        check_recommendations(prediction, 10, seen)


def test_unknown_user_gets_popular_items(client, seen):
    (prediction,) = invoke(client, {"user_id": "never-seen-user", "k": 5})
    assert prediction["fallback"] is True
    assert len(check_recommendations(prediction, 5, seen)) == 5


def test_exclusion_list_and_include_seen(client, seen):
    (first,) = invoke(client, {"user_id": "u5", "k": 6})
    top = [item["item_id"] for item in first["items"]][:3]
    (excluded,) = invoke(client, {"user_id": "u5", "k": 6, "exclude": top})
    assert not set(check_recommendations(excluded, 6, seen)) & set(top)
    everything = invoke(client, {"user_id": "u5", "k": CATALOG_SIZE, "exclude_seen": False})[0]["items"]
    assert seen["u5"] <= {item["item_id"] for item in everything}


def test_pair_scores(client, seen):
    known_item = sorted(seen["u0"])[0]
    pairs = [{"user_id": "u0", "item_id": known_item}, {"user_id": "u0", "item_id": "no-such-item"}]
    scored = invoke(client, {"signature": "score", "instances": pairs})
    assert scored[0]["fallback"] is False and 0.0 <= scored[0]["score"] <= 1.0
    assert scored[1] == {"user_id": "u0", "item_id": "no-such-item", "score": 0.0, "fallback": True}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"user_id": "u0", "k": 0}, "k", "k must be between 1 and 100"),
        ({"user_id": "u0", "k": 50}, "k", f"k=50 is larger than the catalog ({CATALOG_SIZE} items)"),
        ({"user_id": 7}, "user_id", "user_id must be a string"),
        ({"user_id": "u0", "signature": "nope"}, "signature", "unknown signature"),
    ],
)
def test_bad_requests_are_model_errors_naming_the_field(client, body, field, message):
    with pytest.raises(client.exceptions.ModelError) as caught:
        invoke(client, body)
    response = caught.value.response
    assert response["OriginalStatusCode"] == 500
    detail = json.loads(json.loads(response["OriginalMessage"])["error"])
    assert detail["field"] == field and detail["status"] == 400 and message in detail["error"]
    assert "Traceback" not in response["OriginalMessage"]
    assert invoke(client, {"user_id": "u0", "k": 1}), "the endpoint keeps serving after a refusal"


def test_container_routes_and_tf_serving_stand_in(endpoint):
    assert requests.get(f"{endpoint.url}/ping", verify=str(endpoint.cert)).status_code == 200
    tfs = re.search(r"stand-in at (http://localhost:\d+)", endpoint.text())[1]
    status = requests.get(f"{tfs}/v1/models/model").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    signatures = requests.get(f"{tfs}/v1/models/model/metadata").json()["metadata"]["signature_def"][
        "signature_def"
    ]
    assert {"serving_default", "recommend_excluding", "recommend_with_seen", "score"} <= set(signatures)
    assert set(signatures["serving_default"]["inputs"]) == {"user_id", "k"}
    columnar = requests.post(
        f"{tfs}/v1/models/model:predict",
        json={"signature_name": "serving_default", "inputs": {"user_id": ["u0"], "k": 2}},
    ).json()
    assert len(columnar["outputs"]["item_ids"][0]) == 2
    rows = requests.post(
        f"{tfs}/v1/models/model/versions/1:predict",
        json={"signature_name": "score", "instances": [{"user_id": "u0", "item_id": "item-0"}]},
    ).json()
    assert set(rows["predictions"][0]) == {"score", "fallback"}
    refused = requests.post(f"{tfs}/v1/models/model:predict", json={"inputs": {"user_id": ["u0"]}})
    assert refused.status_code == 400 and "k" in refused.json()["error"]
    assert requests.get(f"{tfs}/v1/models/other").status_code == 404


def test_sigterm_stops_cleanly_and_removes_the_unpacked_model(endpoint):
    """Runs last in this module: it stops the shared endpoint."""
    unpacked = Path(re.search(r"^model: (\S+) \(version 1\)$", endpoint.text(), re.MULTILINE)[1])
    assert unpacked.is_dir() and unpacked.name.startswith("ncf-model-")
    assert endpoint.stop() == 0
    assert endpoint.text().splitlines()[-1] == "stopped"
    assert not unpacked.exists()
