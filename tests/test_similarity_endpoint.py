"""End to end: similar items and users from the session's trained model behind the local HTTPS endpoint.

The model is conftest's `trained_model` (default similarity: cosine), served from its model.tar.gz by
`python -m deploy.local`, asked through boto3 and through the deploy CLI's `invoke --similar-to`.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_fixtures import runtime_client, trained_model_endpoint

from deploy import invoke
from deploy.local.process import EndpointProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def endpoint(trained_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EndpointProcess]:
    with trained_model_endpoint(trained_model, tmp_path_factory) as running:
        yield running


def ask(
    endpoint: EndpointProcess, body: Any, content_type: str = "application/json", client: Any = None
) -> list[dict]:
    client = client or runtime_client(endpoint.url, endpoint.cert)
    data = body if isinstance(body, str) else json.dumps(body)
    answer = client.invoke_endpoint(
        EndpointName="ncf-local", Body=data, ContentType=content_type, Accept="application/json"
    )
    return json.loads(answer["Body"].read())["predictions"]


def test_similar_items_and_users_through_the_endpoint(endpoint):
    items, users = ask(
        endpoint,
        {
            "instances": [
                {"signature": "similar_items", "item_id": "item-0", "k": 5},
                {"signature": "similar_users", "user_id": "u0", "k": 3},
            ]
        },
    )
    assert items["item_id"] == "item-0" and len(items["similar"]) == 5
    neighbours = [n["item_id"] for n in items["similar"]]
    assert "item-0" not in neighbours and len(set(neighbours)) == 5
    scores = [n["score"] for n in items["similar"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)
    assert users["user_id"] == "u0" and "u0" not in [n["user_id"] for n in users["similar"]]
    (csv_answer,) = ask(endpoint, "item-0,5,similar_items\n", "text/csv")
    assert csv_answer == items


def test_unknown_item_is_refused_naming_it(endpoint):
    client = runtime_client(endpoint.url, endpoint.cert)
    with pytest.raises(client.exceptions.ModelError) as caught:
        ask(endpoint, {"signature": "similar_items", "item_id": "no-such-item"}, client=client)
    detail = json.loads(json.loads(caught.value.response["OriginalMessage"])["error"])
    assert (detail["field"], detail["status"]) == ("item_id", 404)
    assert "'no-such-item'" in detail["error"]


def test_cli_similar_to(endpoint, capsys):
    parser = argparse.ArgumentParser()
    invoke.add_arguments(parser)
    argv = [
        "--similar-to",
        "item-0",
        "--k",
        "3",
        "--endpoint-url",
        endpoint.url,
        "--ca-bundle",
        str(endpoint.cert),
    ]
    assert invoke.run(parser.parse_args(argv), default_endpoint_name="ncf-local", region=None) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["item_id", "rank", "similar", "item_id", "score"]
    assert [line.split()[:2] for line in lines[1:]] == [["item-0", "1"], ["item-0", "2"], ["item-0", "3"]]
