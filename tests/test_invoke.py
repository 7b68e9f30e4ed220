"""deploy/invoke.py: request building, output, and errors as a user sees them, over real HTTPS + boto3.

The endpoint is the local runtime API and container front running the project's inference.py, with
TF Serving replaced by an in-process fake (no TensorFlow needed).
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serving_fixtures import https_server

from deploy import invoke
from deploy.local.container_server import ContainerFront
from deploy.local.httpserver import Request, Response
from deploy.local.inprocess import InProcessAdapter

ROOT = Path(__file__).resolve().parents[1]
CATALOG = "abcdefghijkl"


class FakeTFServing:
    """Answers like a model of a 12-item catalog; `fail` makes it answer HTTP 500 with a stack dump."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = False

    def __call__(self, request: Request) -> Response:
        body = json.loads(request.body)
        self.calls.append(body)
        if self.fail:
            return Response(500, b'{"error": "Traceback (most recent call last): ..."}')
        users = body["inputs"]["user_id"]
        k = min(body["inputs"]["k"], len(CATALOG))
        outputs = {
            "item_ids": [list(CATALOG[:k]) for _ in users],
            "scores": [[1 / 2**i for i in range(k)] for _ in users],
            "fallback": [user.startswith("new") for user in users],
        }
        if "filter" in body["inputs"]:  # the model refuses the filter named "nope"
            unknown = (
                "unknown filter 'nope' (this model's filters: genre)"
                if body["inputs"]["filter"] == "nope"
                else ""
            )
            outputs["filter_error"] = [unknown for _ in users]
        if "history" in body["inputs"]:
            outputs["unknown_history"] = [[item == "zz" for item in row] for row in body["inputs"]["history"]]
        return Response(200, json.dumps({"outputs": outputs}).encode())


@pytest.fixture
def endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path, FakeTFServing]]:
    code = tmp_path / "code"
    shutil.copytree(ROOT / "inference", code)
    front = ContainerFront(code, 8501)
    # The endpoint runs in this process: its refusal lines (stderr, CloudWatch in production) go to the
    # log capture instead, so stderr is what the CLI prints.
    monkeypatch.setattr(front.module.EVENTS, "handlers", [])
    monkeypatch.setattr(front.module.EVENTS, "propagate", True)
    tfs = FakeTFServing()
    front.module.SESSION.mount("http://localhost:8501/", InProcessAdapter(tfs))
    with https_server(front, tmp_path / "tls") as (_, url, cert):
        yield url, cert, tfs


@pytest.fixture(autouse=True)
def no_aws_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_REGION",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("NCF_LOCAL_TLS_DIR", str(tmp_path / "no-tls"))


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    invoke.add_arguments(parser)
    return invoke.run(parser.parse_args(argv), default_endpoint_name="ncf-test", region=None)


def test_table_for_several_users(endpoint, capsys):
    url, cert, tfs = endpoint
    assert (
        run("--user", "42", "--user", "new-user", "--k", "2", "--endpoint-url", url, "--ca-bundle", str(cert))
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["user_id", "rank", "item_id", "score", "fallback"]
    assert [line.split() for line in lines[1:]] == [
        ["42", "1", "a", "1.0000", "no"],
        ["42", "2", "b", "0.5000", "no"],
        ["new-user", "1", "a", "1.0000", "yes"],
        ["new-user", "2", "b", "0.5000", "yes"],
    ]
    assert tfs.calls[0]["inputs"] == {"user_id": ["42", "new-user"], "k": 2}


@pytest.mark.parametrize("content_type", ["json", "jsonlines", "csv"])
def test_json_output_for_each_request_format(endpoint, capsys, tmp_path, content_type):
    url, cert, _ = endpoint
    users = tmp_path / "users.txt"
    users.write_text("1\n\n2\n")
    argv = ["--users-file", str(users), "--k", "1", "--content-type", content_type, "--format", "json"]
    assert run(*argv, "--endpoint-url", url, "--ca-bundle", str(cert)) == 0
    predictions = json.loads(capsys.readouterr().out)["predictions"]
    assert [(p["user_id"], p["items"]) for p in predictions] == [
        ("1", [{"item_id": "a", "score": 1.0}]),
        ("2", [{"item_id": "a", "score": 1.0}]),
    ]


def test_exclusions_and_include_seen_reach_the_model(endpoint):
    url, cert, tfs = endpoint
    argv = ["--user", "1", "--exclude", "x", "--exclude", "y", "--include-seen"]
    assert run(*argv, "--endpoint-url", url, "--ca-bundle", str(cert)) == 0
    assert tfs.calls[0] == {
        "signature_name": "recommend_with_seen",
        "inputs": {"user_id": ["1"], "k": 10, "exclude": [["x", "y"]]},
    }


def test_history_reaches_recommend_from_history_and_ignored_ids_are_shown(endpoint, capsys):
    url, cert, tfs = endpoint
    argv = ["--user", "new1", "--history", "a", "--history", "zz", "--k", "2"]
    assert run(*argv, "--endpoint-url", url, "--ca-bundle", str(cert)) == 0
    assert tfs.calls[0] == {
        "signature_name": "recommend_from_history",
        "inputs": {"user_id": ["new1"], "k": 2, "history": [["a", "zz"]]},
    }
    assert "ignored history items the model does not know (new1: zz)" in capsys.readouterr().out


def test_filter_and_its_values_reach_recommend_filtered(endpoint):
    url, cert, tfs = endpoint
    argv = [
        "--user",
        "1",
        "--filter",
        "genre",
        "--filter-value",
        "GENRES=Comedy, Drama",
        "--filter-value",
        "MAX=9",
    ]
    assert run(*argv, "--endpoint-url", url, "--ca-bundle", str(cert)) == 0
    assert tfs.calls[0] == {
        "signature_name": "recommend_filtered",
        "inputs": {
            "k": 10,
            "filter": "genre",
            "filter_names": ["GENRES", "MAX"],
            "filter_values": [["Comedy", "Drama"], ["9", ""]],
            "user_id": ["1"],
            "exclude": [[""]],
            "exclude_seen": True,
            "now": 0.0,
        },
    }


def test_promote_and_item_fields_reach_the_request():
    parser = argparse.ArgumentParser()
    invoke.add_arguments(parser)
    args = parser.parse_args(["--user", "1", "--promote", "on_sale:0.25", "--item-field", "title"])
    body, _, _ = invoke.request_of(args)
    assert json.loads(body) == {
        "user_id": "1",
        "k": 10,
        "promotion": {"filter": "on_sale", "share": 0.25},
        "item_fields": ["title"],
    }


def test_table_marks_promoted_items_and_shows_item_fields():
    prediction = {
        "user_id": "7",
        "fallback": False,
        "items": [
            {"item_id": "a", "score": 0.9, "promoted": True, "fields": {"title": "Alpha"}},
            {"item_id": "b", "score": 0.5, "fields": {"title": "Beta"}},
        ],
    }
    lines = invoke.render_table([prediction]).splitlines()
    assert "a (promoted)  title=Alpha" in lines[1] and "b  title=Beta" in lines[2]


def test_a_filter_the_model_refuses_prints_one_clear_line(endpoint, capsys):
    url, cert, _ = endpoint
    assert run("--user", "1", "--filter", "nope", "--endpoint-url", url, "--ca-bundle", str(cert)) == 1
    assert capsys.readouterr().err == (
        "error: endpoint ncf-test: the endpoint refused the request: "
        "unknown filter 'nope' (this model's filters: genre) (field: filter)\n"
    )


def test_refused_request_prints_one_clear_line(endpoint, capsys):
    url, cert, _ = endpoint
    assert run("--user", "1", "--k", "0", "--endpoint-url", url, "--ca-bundle", str(cert)) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: endpoint ncf-test: the endpoint refused the request: "
        "k must be between 1 and 100 (NCF_MAX_K), got 0 (field: k)\n"
    )


def test_model_larger_k_than_catalog_and_server_failure(endpoint, capsys):
    url, cert, tfs = endpoint
    argv = ["--user", "1", "--k", "20", "--endpoint-name", "e"]
    assert run(*argv, "--endpoint-url", url, "--ca-bundle", str(cert)) == 1
    assert capsys.readouterr().err == (
        "error: endpoint e: the endpoint refused the request: "
        "k=20 is larger than the catalog (12 items) (field: k)\n"
    )
    tfs.fail = True
    assert run("--user", "1", "--endpoint-url", url, "--ca-bundle", str(cert)) == 1
    err = capsys.readouterr().err
    assert err == "error: endpoint ncf-test: the endpoint failed: the model server failed (HTTP 500)\n"
    assert "Traceback" not in err


def test_local_certificate_is_found_without_ca_bundle(endpoint, monkeypatch, capsys):
    url, cert, _ = endpoint
    assert run("--user", "1", "--endpoint-url", url) == 1
    assert "TLS certificate not trusted; pass --ca-bundle" in capsys.readouterr().err
    monkeypatch.setenv("NCF_LOCAL_TLS_DIR", str(cert.parent))
    assert run("--user", "1", "--endpoint-url", url) == 0


def test_unreachable_endpoint(capsys, tmp_path):
    bundle = tmp_path / "cert.pem"
    bundle.write_text("")
    assert run("--user", "1", "--endpoint-url", "https://127.0.0.1:9", "--ca-bundle", str(bundle)) == 1
    assert "cannot reach https://127.0.0.1:9" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give a user id with --user"),
        (["--user", "1", "--content-type", "csv", "--exclude", "x"], "need --content-type json or jsonlines"),
        (["--user", "1", "--ca-bundle", "/no/such/cert.pem"], "--ca-bundle /no/such/cert.pem does not exist"),
        (["--users-file", "/no/such/users.txt"], "cannot read --users-file"),
        (["--user", "1", "--content-type", "csv", "--history", "x"], "need --content-type json or jsonlines"),
        (["--user", "1", "--history", "x", "--exclude", "y"], "--history cannot be combined"),
        (["--similar-to", "1", "--history", "x"], "not to similarity"),
        (["--user", "1", "--filter-value", "A=1"], "--filter-value needs --filter"),
        (["--user", "1", "--filter", "f", "--filter-value", "A"], "expected PARAM=VALUE or PARAM=V1,V2"),
        (
            ["--user", "1", "--filter", "f", "--filter-value", "A=1", "--filter-value", "A=2"],
            "A is given twice",
        ),
        (["--similar-users-to", "1", "--filter", "f"], "not to --similar-users-to"),
        (["--user", "1", "--filter", "f", "--content-type", "csv"], "need --content-type json or jsonlines"),
        (["--user", "1", "--promote", "on_sale"], "expected FILTER:SHARE"),
        (["--user", "1", "--promote", "on_sale:lots"], "expected FILTER:SHARE"),
        (["--similar-to", "1", "--promote", "on_sale:0.2"], "--promote applies to recommendations"),
        (["--similar-users-to", "1", "--item-field", "title"], "--item-field applies to recommendations"),
    ],
)
def test_usage_errors_exit_2(capsys, argv, message):
    assert run(*argv) == 2
    assert message in capsys.readouterr().err


def test_build_request_shapes():
    body, content_type, accept = invoke.build_request(["1"], 3, [], False, "json")
    assert (json.loads(body), content_type, accept) == (
        {"user_id": "1", "k": 3},
        "application/json",
        "application/json",
    )
    body, _, _ = invoke.build_request(["1", "2"], 3, ["x"], True, "json")
    assert json.loads(body) == {
        "instances": [{"user_id": u, "k": 3, "exclude": ["x"], "exclude_seen": False} for u in ("1", "2")]
    }
    body, content_type, accept = invoke.build_request(['a,"b', "c"], 2, [], False, "csv")
    assert (body, content_type, accept) == (b'"a,""b",2\nc,2\n', "text/csv", "application/json")


def test_describe_model_error_without_structured_detail():
    response = {"OriginalStatusCode": 502, "OriginalMessage": "<html>Bad Gateway</html>"}
    assert invoke.describe_model_error(response) == "the model failed (HTTP 502): <html>Bad Gateway</html>"
    response = {"OriginalStatusCode": 500, "OriginalMessage": '{"error": "plain"}'}
    assert invoke.describe_model_error(response) == "the model failed (HTTP 500): plain"
